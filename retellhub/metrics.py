"""Prometheus metrics: what the process counts, what the database holds, and ``GET /metrics``.

Each server process keeps its own counters in prometheus-client's default registry and
answers for itself; Prometheus scrapes every process (README "Production"). We do not use
the client's multiprocess mode: daphne processes are separate servers, not workers forked
from one parent, so nothing would clean up a dead process's files, and per-process series
are what a load-balanced deployment scrapes anyway. Figures that live in the database (the
outbox) are read at scrape time by a collector, so every process reports the same values.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from calls.merge import EVENT_RANK
from calls.net import client_ip, is_loopback

logger = logging.getLogger(__name__)

# Event names come from signed bodies, but an unbounded label set would still grow without
# limit if Retell added many; names we do not know are counted together.
KNOWN_EVENTS = frozenset(EVENT_RANK)
OTHER_EVENT = "other"
NO_EVENT = "unknown"  # refused before the body was parsed

WEBHOOK_DELIVERIES = Counter(
    "retellhub_webhook_deliveries",
    "Webhook deliveries by event and outcome: stored, duplicate, or why it was refused.",
    ["event", "outcome"],
)
REQUEST_LATENCY = Histogram(
    "retellhub_http_request_duration_seconds",
    "Time to answer an HTTP request, by view, method and status code.",
    ["view", "method", "status"],
)
WEBHOOK_BATCH_SIZE = Histogram(
    "retellhub_webhook_batch_deliveries",
    "Deliveries written per webhook transaction (group commit; calls/ingest.py).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
WEBHOOK_BATCH_SECONDS = Histogram(
    "retellhub_webhook_batch_seconds",
    "Time to write one webhook transaction, commit included; failed ones count too.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
WEBHOOK_WRITER_EXITS = Counter(
    "retellhub_webhook_writer_exits",
    "Webhook writer processes (calls/writer_process.py) that exited while their server ran; "
    "the deliveries they held answered 500.",
)
LLM_SOCKETS_OPEN = Gauge("retellhub_llm_sockets_open", "Call sockets currently open.")
LLM_FIRST_FRAME = Histogram(
    "retellhub_llm_first_frame_seconds",
    "Per turn: from Retell's request to the first answer frame sent.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0),
)
LLM_ANSWERS_CANCELLED = Counter(
    "retellhub_llm_answers_cancelled",
    "Answers cancelled because Retell asked for a newer response_id.",
)


# --- What the code calls ------------------------------------------------------------------

# Label values here come from small fixed sets (event names, outcomes, views, methods, status
# codes); past this many series something is wrong, and they are no longer kept.
_SERIES_KEPT = 1024
_series: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _labelled(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, kept for the next time: prometheus-client checks the
    values and takes a lock on every call, which was a tenth of the server process's CPU
    per webhook on the 2-core benchmark machine. (Nothing here clears a metric, which would
    leave a kept series counting on its own.)"""
    key = (metric, values)
    series = _series.get(key)
    if series is None:
        series = metric.labels(*values)
        if len(_series) < _SERIES_KEPT:
            _series[key] = series
    return series


def webhook_delivery(*, event: str | None, outcome: str) -> None:
    if event is None:
        label = NO_EVENT
    else:
        label = event if event in KNOWN_EVENTS else OTHER_EVENT
    _labelled(WEBHOOK_DELIVERIES, label, outcome).inc()


def request_answered(*, view: str, method: str, status: int, seconds: float) -> None:
    _labelled(REQUEST_LATENCY, view, method, str(status)).observe(seconds)


def webhook_batch_written(*, deliveries: int, seconds: float) -> None:
    WEBHOOK_BATCH_SIZE.observe(deliveries)
    WEBHOOK_BATCH_SECONDS.observe(seconds)


def webhook_writer_exited() -> None:
    WEBHOOK_WRITER_EXITS.inc()


def llm_socket_opened() -> None:
    LLM_SOCKETS_OPEN.inc()


def llm_socket_closed() -> None:
    LLM_SOCKETS_OPEN.dec()


def llm_first_frame(*, milliseconds: float) -> None:
    LLM_FIRST_FRAME.observe(milliseconds / 1000)


def llm_answer_cancelled() -> None:
    LLM_ANSWERS_CANCELLED.inc()


# --- Request latency ------------------------------------------------------------------------


def _observe_request(request: HttpRequest, response: HttpResponse, started: float) -> None:
    match = getattr(request, "resolver_match", None)
    # The view name, not the path: paths carry call ids and would make a series per call.
    view = match.view_name if match is not None else "unmatched"
    request_answered(
        view=view,
        method=request.method or "",
        status=response.status_code,
        seconds=time.perf_counter() - started,
    )


class RequestLatencyMiddleware:
    """Times every HTTP request; works in both the sync and the async request path."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        started = time.perf_counter()
        response = self.get_response(request)
        _observe_request(request, response, started)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = await self.get_response(request)
        _observe_request(request, response, started)
        return response


# --- The outbox, read from the database at scrape time -----------------------------------


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def _delivery_counts() -> GaugeMetricFamily:
    from notifications.models import Delivery, DeliveryKind, DeliveryState

    family = _gauge(
        "retellhub_outbox_deliveries",
        "Outbox deliveries by kind and state (pending, succeeded, dead).",
        ["kind", "state"],
    )
    counts = {
        (row["kind"], row["state"]): row["n"]
        for row in Delivery.objects.values("kind", "state").annotate(n=Count("id")).order_by()
    }
    # Every combination, zeros included, so that alerts on "dead > 0" have a series to read.
    for kind in DeliveryKind.values:
        for state in DeliveryState.values:
            family.add_metric([kind, state], counts.get((kind, state), 0))
    return family


def _task_counts() -> GaugeMetricFamily:
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    family = _gauge(
        "retellhub_outbox_tasks",
        "Task rows in the database backend by status (READY, RUNNING, ...).",
        ["status"],
    )
    counts = {
        row["status"]: row["n"]
        for row in DBTaskResult.objects.values("status").annotate(n=Count("id")).order_by()
    }
    for status in TaskResultStatus.values:
        family.add_metric([status], counts.get(status, 0))
    return family


class OutboxCollector(Collector):
    """Outbox deliveries and tasks by state, counted when Prometheus scrapes."""

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Names only: registering must not query the database.
        return [
            _gauge("retellhub_outbox_deliveries", "", ["kind", "state"]),
            _gauge("retellhub_outbox_tasks", "", ["status"]),
            _gauge("retellhub_outbox_up", ""),
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = _gauge("retellhub_outbox_up", "1 when the outbox could be counted, else 0.")
        try:
            families = [_delivery_counts(), _task_counts()]
        except DatabaseError:
            logger.warning("metrics: the outbox could not be counted", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from families
        yield up


REGISTRY.register(OutboxCollector())


# --- GET /metrics ----------------------------------------------------------------------------


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode("utf-8"), token.encode("utf-8")
    )


def _direct_loopback_caller(request: HttpRequest) -> bool:
    trusted = settings.TRUSTED_PROXY_COUNT
    # A proxy on this host relays outside callers from a loopback address; when proxies are
    # not declared, a forwarded request is treated as coming from outside.
    if trusted == 0 and "HTTP_X_FORWARDED_FOR" in request.META:
        return False
    return is_loopback(client_ip(request.META, trusted_proxies=trusted))


def metrics_refusal(request: HttpRequest) -> JsonResponse | None:
    """Why this caller may not read the metrics, as the answer to send; None if it may."""
    token = settings.METRICS_TOKEN
    if token:
        if _bearer_matches(request, token):
            return None
        response = JsonResponse({"message": "Unauthorized"}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if _direct_loopback_caller(request):
        return None
    return JsonResponse({"message": "Forbidden: set METRICS_TOKEN to scrape remotely."}, status=403)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: this process's metrics in Prometheus' text format."""
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
