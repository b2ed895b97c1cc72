"""The outbox: where side effects go, what is owed to each, and what each attempt did.

A ``Delivery`` row is written in the webhook's own transaction together with the task
that will run it (see services.py), so a committed event always has its deliveries and a
rolled-back one never does. The row, not the task, is the unit of work: tasks are
per-attempt and disposable, the delivery keeps state, attempts, the schedule and the log.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from calls.models import Call, CallEvent
from calls.net import is_loopback
from notifications import signing


class DestinationKind(models.TextChoices):
    SLACK = "slack", "Slack incoming webhook"
    FORWARD = "forward", "Forwarding (Standard Webhooks)"


class SlackTrigger(models.TextChoices):
    CALL_ENDED = "call_ended", "Call ended"
    CALL_ANALYZED = "call_analyzed", "Call analyzed"
    NEGATIVE_SENTIMENT = "negative_sentiment", "Negative sentiment"
    UNSUCCESSFUL_CALL = "unsuccessful_call", "Unsuccessful call"
    ERROR_DISCONNECTION = "error_disconnection", "Disconnected by an error"


def validate_delivery_url(url: str) -> None:
    """HTTPS only; plain HTTP is allowed to loopback for local receivers and tests."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise ValidationError("Use an https:// URL (plain http only to localhost).")


def parse_event_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class Destination(models.Model):
    """Somewhere call events are sent: a Slack channel or a forwarding endpoint."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=DestinationKind.choices)
    url = models.URLField(max_length=2048, validators=[validate_delivery_url])
    events = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text=(
            "Comma-separated. Forwarding: Retell event types (call_started, call_ended, "
            "call_analyzed, ...). Slack: call_ended, call_analyzed, negative_sentiment, "
            "unsuccessful_call, error_disconnection. Empty: all."
        ),
    )
    signing_secret = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text="Forwarding only: whsec_... (base64 after the prefix). Generated if empty.",
    )
    show_phone_numbers = models.BooleanField(
        default=False, help_text="Slack only: show full numbers instead of masked ones."
    )
    enabled = models.BooleanField(default=True)
    # Set on rows mirrored from the environment (SLACK_WEBHOOK_URL, FORWARD_URLS); those
    # are read-only in admin and their secrets are read from settings, never stored.
    env_key = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.kind == DestinationKind.FORWARD and not self.signing_secret and not self.env_key:
            self.signing_secret = signing.generate_secret()
        super().save(*args, **kwargs)

    @property
    def event_list(self) -> list[str]:
        return parse_event_list(self.events)

    @property
    def from_environment(self) -> bool:
        return self.env_key is not None

    def clean(self) -> None:
        if self.kind == DestinationKind.SLACK:
            unknown = set(self.event_list) - set(SlackTrigger.values)
            if unknown:
                raise ValidationError({"events": f"Unknown Slack events: {sorted(unknown)}"})
        if self.kind == DestinationKind.FORWARD and self.signing_secret:
            if not signing.is_valid_secret(self.signing_secret):
                raise ValidationError({"signing_secret": "Expected whsec_ and base64."})


class DeliveryKind(models.TextChoices):
    SLACK = "slack", "Slack"
    FORWARD = "forward", "Forward"
    RECORDING = "recording", "Recording capture"


class DeliveryState(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DEAD = "dead"


class Delivery(models.Model):
    """One side effect owed for one stored event: retried with backoff until done or dead."""

    kind = models.CharField(max_length=16, choices=DeliveryKind.choices)
    destination = models.ForeignKey(
        Destination, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(
        CallEvent, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    # Stable across retries: the Standard Webhooks ``webhook-id`` receivers dedupe on.
    message_id = models.CharField(max_length=64, unique=True)
    source_url = models.URLField(max_length=2048, blank=True, default="")
    body = models.TextField(blank=True, default="", help_text="The exact JSON sent.")
    triggers = models.CharField(max_length=200, blank=True, default="")

    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField()
    next_attempt_at = models.DateTimeField()
    # While set and in the future an attempt is in flight; a worker that died mid-attempt
    # leaves it to expire, after which the delivery can be claimed again.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            # Exactly one delivery per destination per stored event, whatever retries.
            models.UniqueConstraint(
                fields=["destination", "event"],
                condition=Q(destination__isnull=False),
                name="delivery_one_per_destination_event",
            ),
            models.UniqueConstraint(
                fields=["call"],
                condition=Q(kind="recording"),
                name="delivery_one_recording_per_call",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="delivery_state_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.state})"


class DeliveryAttempt(models.Model):
    """What one attempt did: answered status (or error) and how long it took."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    succeeded = models.BooleanField()
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery}"

    @property
    def latency(self) -> timedelta:
        return timedelta(milliseconds=self.latency_ms)


def recording_upload_to(instance: Recording, filename: str) -> str:
    return f"recordings/{instance.call.call_id}/{filename}"


class Recording(models.Model):
    """A call's recording copied into our storage (Retell's links can expire)."""

    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="recording")
    source_url = models.URLField(max_length=2048)
    file = models.FileField(upload_to=recording_upload_to, max_length=500)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=100, blank=True, default="")
    captured_at = models.DateTimeField()

    class Meta:
        ordering = ["-captured_at"]

    def __str__(self) -> str:
        return f"recording of {self.call.call_id}"
