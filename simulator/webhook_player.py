"""The webhook half of a call: signed deliveries, and the conformance probes.

Uses the benchmarks' HTTP client and signer (bench/_common.py), so the simulator and the
load tests speak to the endpoint the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench._common import HttpConnection, RetellSigner, Target
from simulator.callobject import Json, webhook_body
from simulator.conformance import Rule
from simulator.timeline import Timeline

HEADER = "X-Retell-Signature"
# A key the server cannot have: a delivery signed with it must be refused.
WRONG_KEY = "key_simulator_wrong_0f7e3a9b"
# Past the 5-minute window (A.5), with a minute to spare for clock skew between hosts.
STALE_MS = 6 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Delivery:
    label: str
    status: int | None
    latency_ns: int | None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def outcome(self) -> str:
        if self.status is None or self.latency_ns is None:
            return f"no answer ({self.error})"
        return f"{self.status} in {self.latency_ns / 1e6:.1f} ms"


class WebhookPlayer:
    def __init__(
        self, target: Target, *, path: str, api_key: str, timeout: float, timeline: Timeline
    ) -> None:
        self._conn = HttpConnection(target.host, target.port, timeout=timeout)
        self._signer = RetellSigner(api_key)
        self._path = target.prefix + path
        self._timeline = timeline
        self.deliveries: list[Delivery] = []  # the genuine ones, timed for the report
        self.probes: list[Delivery] = []

    def close(self) -> None:
        self._conn.close()

    async def deliver(self, event: str, call: Json) -> Delivery:
        """A genuine delivery: signed, well-formed, and it must be answered 2xx."""
        body = webhook_body(event, call)
        delivery = await self._post(event, body, self._signer.sign(body))
        self.deliveries.append(delivery)
        self._timeline.add("webhook", f"{event} -> {delivery.outcome()}", status=delivery.status)
        if not delivery.accepted:
            self._timeline.violate(Rule.WEBHOOK_REFUSED, f"{event}: {delivery.outcome()}")
        return delivery

    async def probe(self, call: Json) -> None:
        """Send what Retell never would and check the answers (--check only)."""
        body = webhook_body("call_ended", call)
        wrong = RetellSigner(WRONG_KEY).sign(body)
        stale = self._signer.sign(body, time.time_ns() // 1_000_000 - STALE_MS)
        malformed = body[: len(body) // 2]  # cut mid-object: signed, but not JSON
        await self._refused("signed with another key", body, wrong, Rule.BAD_SIGNATURE_ACCEPTED)
        await self._refused("no signature header", body, None, Rule.BAD_SIGNATURE_ACCEPTED)
        await self._refused("signed 6 minutes ago", body, stale, Rule.STALE_SIGNATURE_ACCEPTED)
        await self._refused(
            "truncated JSON", malformed, self._signer.sign(malformed), Rule.MALFORMED_BODY_ACCEPTED
        )
        legacy = webhook_body("call_ended", call, key="data")
        delivery = await self._post("legacy 'data' body", legacy, self._signer.sign(legacy))
        self._report_probe(delivery)
        if not delivery.accepted:
            self._timeline.violate(Rule.LEGACY_BODY_REFUSED, delivery.outcome())

    async def _refused(self, label: str, body: bytes, signature: str | None, rule: Rule) -> None:
        delivery = await self._post(label, body, signature)
        self._report_probe(delivery)
        if delivery.accepted:
            self._timeline.violate(rule, f"{label}: answered {delivery.status}")

    def _report_probe(self, delivery: Delivery) -> None:
        self.probes.append(delivery)
        self._timeline.add("check", f"probe {delivery.label} -> {delivery.outcome()}")

    async def _post(self, label: str, body: bytes, signature: str | None) -> Delivery:
        headers = {"Content-Type": "application/json", "User-Agent": "retellhub-simulator/1"}
        if signature is not None:
            headers[HEADER] = signature
        began = time.perf_counter_ns()
        try:
            response = await self._conn.request("POST", self._path, headers, body)
        except (OSError, TimeoutError) as exc:
            delivery = Delivery(label, None, None, str(exc) or type(exc).__name__)
        else:
            delivery = Delivery(label, response.status, time.perf_counter_ns() - began)
        return delivery
