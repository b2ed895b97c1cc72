"""Helpers for the outbox tests: the real worker in-process, a receiver, a verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connections
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response
from werkzeug.datastructures import Headers

from notifications.models import Delivery, DeliveryState, Destination, DestinationKind
from tests.servers import ROOT, database_url

FORWARD_SECRET = "whsec_" + base64.b64encode(b"retellhub-test-forwarding-key-32b").decode()
TOLERANCE_SECONDS = 5 * 60


def forward_destination(receiver: Receiver, **fields: Any) -> Destination:
    """A forwarding destination in the database, signed with ``FORWARD_SECRET``."""
    return Destination.objects.create(
        name="CRM",
        kind=DestinationKind.FORWARD,
        url=receiver.url,
        signing_secret=FORWARD_SECRET,
        **fields,
    )


def tasks_run_ready() -> int:
    """Run every ready task with django-tasks-db's own Worker, like ``db_worker --batch``.

    Claims and runs through ``Worker.run_task`` rather than ``Worker.run`` because the
    latter closes connections between tasks, which the test transaction cannot survive.
    """
    worker = Worker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    )
    ran = 0
    while (result := DBTaskResult.objects.ready().first()) is not None:
        result.claim(worker.worker_id)
        worker.run_task(result)
        ran += 1
    return ran


def deliveries_make_due() -> None:
    """Let the backoff pass without waiting: move waiting deliveries and tasks to the past."""
    past = timezone.now() - timedelta(seconds=1)
    Delivery.objects.filter(state=DeliveryState.PENDING).update(next_attempt_at=past)
    DBTaskResult.objects.filter(status=TaskResultStatus.READY).update(run_after=past)


def db_worker_batch() -> subprocess.CompletedProcess[str]:
    """The real ``manage.py db_worker`` in its own process, on the test database."""
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": database_url(connections["default"].settings_dict),
        "SLACK_WEBHOOK_URL": "",
        "FORWARD_URLS": "",
    }
    return subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay", "-v", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def verify_standard_webhook(
    *, secret: str, headers: Mapping[str, str] | Headers, body: bytes
) -> Any:
    """A receiver's check, written from the Standard Webhooks spec, not from our signer."""
    message_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(int(timezone.now().timestamp()) - int(timestamp)) > TOLERANCE_SECONDS:
        raise AssertionError("stale webhook-timestamp")
    key = base64.b64decode(secret.split("_", 1)[1])
    content = message_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise AssertionError("no valid v1 signature")


@dataclass
class Receiver:
    """One path on the loopback HTTP server that can be taken down and brought back."""

    server: HTTPServer
    path: str
    status: int = 200

    def __post_init__(self) -> None:
        self.server.expect_request(self.path, method="POST").respond_with_handler(self.answer)

    def answer(self, request: Request) -> Response:
        return Response("ok" if self.status < 300 else "down", status=self.status)

    @property
    def url(self) -> str:
        return self.server.url_for(self.path)

    def requests(self, *, status: int | None = None) -> list[Request]:
        return [
            request
            for request, response in self.server.log
            if request.path == self.path and (status is None or response.status_code == status)
        ]
