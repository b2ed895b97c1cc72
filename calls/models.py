from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from calls.fields import JSONField, JSONTextField
from retellhub import fastjson


class CallStatus(models.TextChoices):
    REGISTERED = "registered"
    NOT_CONNECTED = "not_connected"
    ONGOING = "ongoing"
    ENDED = "ended"
    ERROR = "error"


class Direction(models.TextChoices):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Sentiment(models.TextChoices):
    POSITIVE = "Positive"
    NEUTRAL = "Neutral"
    NEGATIVE = "Negative"
    UNKNOWN = "Unknown"


# The Call columns a webhook's call object fills by reference (Call.transcript_event).
TRANSCRIPT_DOCUMENTS = ("transcript_object", "transcript_with_tool_calls")


class Call(models.Model):
    """Everything known about one call, merged order-free from its events (see merge.py)."""

    call_id = models.CharField(max_length=128)  # unique: see Meta.constraints
    agent_id = models.CharField(max_length=128, blank=True, default="")
    agent_version = models.IntegerField(null=True, blank=True)
    agent_name = models.CharField(max_length=255, blank=True, default="")
    call_type = models.CharField(max_length=32, blank=True, default="")
    direction = models.CharField(max_length=16, blank=True, default="", choices=Direction.choices)
    from_number = models.CharField(max_length=64, blank=True, default="")
    to_number = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=32, blank=True, default="", choices=CallStatus.choices)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.BigIntegerField(null=True, blank=True)
    disconnection_reason = models.CharField(max_length=64, blank=True, default="")

    transcript = models.TextField(blank=True, default="")
    # The structured transcript, with every word's timings, is most of a delivery's bytes.
    # When a stored event carried the winning one (any webhook), the call refers to that
    # event instead of copying it (``transcript_event``), and these two stay empty. They
    # hold it only when no event did: the call socket's live transcript. Read both through
    # ``transcript_document``. Text, not JSON columns: never searched inside (fields.py).
    transcript_object = JSONTextField(null=True, blank=True)
    transcript_with_tool_calls = JSONTextField(null=True, blank=True)
    transcript_event = models.ForeignKey(
        "CallEvent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The event whose call object carried the structured transcript.",
    )
    recording_url = models.URLField(max_length=2048, blank=True, default="")
    public_log_url = models.URLField(max_length=2048, blank=True, default="")
    metadata = JSONField(null=True, blank=True)
    dynamic_variables = JSONField(null=True, blank=True)
    collected_dynamic_variables = JSONField(null=True, blank=True)

    call_summary = models.TextField(blank=True, default="")
    user_sentiment = models.CharField(
        max_length=16, blank=True, default="", choices=Sentiment.choices
    )
    call_successful = models.BooleanField(null=True, blank=True)
    in_voicemail = models.BooleanField(null=True, blank=True)
    custom_analysis_data = JSONField(null=True, blank=True)

    combined_cost = models.DecimalField(
        max_digits=14, decimal_places=4, null=True, blank=True, help_text="Cents."
    )
    latency = JSONField(null=True, blank=True)
    e2e_latency_p50_ms = models.FloatField(null=True, blank=True)
    llm_latency_p50_ms = models.FloatField(null=True, blank=True)

    last_event = models.CharField(max_length=64, blank=True, default="")
    last_event_at = models.DateTimeField(null=True, blank=True)
    # The event whose call object is the most advanced received (see calls/merge.py); its
    # payload is ``call_object``. A reference, not a copy: every delivery stores its call
    # object once, in its event's raw body.
    call_object_event = models.ForeignKey(
        "CallEvent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The event that carried the most advanced full call object received.",
    )
    # The merge version behind each column's value; see calls/merge.py. Rewritten by every
    # delivery, read only whole: text (fields.py).
    field_versions = JSONTextField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["status"], name="call_status_idx"),
            models.Index(fields=["agent_id", "started_at"], name="call_agent_started_idx"),
            models.Index(fields=["started_at"], name="call_started_idx"),
            models.Index(fields=["user_sentiment"], name="call_sentiment_idx"),
            models.Index(fields=["disconnection_reason"], name="call_disconnect_idx"),
            # The API orders by these; one plain index serves both directions.
            models.Index(fields=["duration_ms"], name="call_duration_idx"),
            models.Index(fields=["combined_cost"], name="call_cost_idx"),
        ]
        # A constraint rather than unique=True: on PostgreSQL that also adds a second
        # (varchar_pattern_ops) index for LIKE 'prefix%', which nothing here runs and every
        # write of the row pays for.
        constraints = [models.UniqueConstraint(fields=["call_id"], name="call_call_id_uniq")]

    def __str__(self) -> str:
        return self.call_id

    @property
    def duration(self) -> timedelta | None:
        if self.duration_ms is not None:
            return timedelta(milliseconds=self.duration_ms)
        if self.started_at and self.ended_at:
            return self.ended_at - self.started_at
        return None

    @property
    def is_finished(self) -> bool:
        return self.status in {CallStatus.ENDED, CallStatus.NOT_CONNECTED, CallStatus.ERROR}

    def transcript_document(self, name: str) -> list[Any] | None:
        """``transcript_object`` or ``transcript_with_tool_calls`` as last merged: from the
        event referred to (a query unless it was selected with the call), else as held.
        """
        if name not in TRANSCRIPT_DOCUMENTS:
            raise ValueError(f"not a transcript document: {name!r}")
        event = self.transcript_event
        if event is None:
            held: list[Any] | None = getattr(self, name)
            return held
        payload = event.payload
        value = payload.get(name) if isinstance(payload, dict) else None
        return value if isinstance(value, list) else None

    def column_values(self) -> dict[str, Any]:
        """Every column by attname, with the transcript documents resolved: what the call
        says, whichever way its transcript is stored."""
        values = {f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields}
        del values["transcript_event_id"]
        values.update((name, self.transcript_document(name)) for name in TRANSCRIPT_DOCUMENTS)
        return values

    @property
    def call_object(self) -> Any:
        """The most advanced full call object received (None: none yet).

        Reads ``call_object_event`` (a query unless it was selected with the call).
        """
        event = self.call_object_event
        return None if event is None else event.payload


class EventSource(models.TextChoices):
    WEBHOOK = "webhook"
    LLM_SOCKET = "llm_socket", "LLM socket"
    RETELL_API = "retell_api", "Retell API"


class CallEvent(models.Model):
    """One distinct delivery, exactly as received. Re-deliveries bump ``delivery_count``.

    The delivery is stored once, as ``raw_body``; ``payload`` is parsed from it.
    """

    # No index of its own: event_call_time_idx starts with the call.
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="events", db_index=False)
    event = models.CharField(max_length=64)
    source = models.CharField(
        max_length=16, choices=EventSource.choices, default=EventSource.WEBHOOK
    )
    raw_body = models.TextField(
        help_text="The exact request body (after a retention scrub: what is left of it)."
    )
    body_sha256 = models.CharField(max_length=64)  # unique: see Meta.constraints
    payload_key = models.CharField(
        max_length=8,
        blank=True,
        default="",
        help_text="Where the body holds the call object: 'call', or legacy 'data'. "
        "Empty: the body is the payload (socket sessions).",
    )
    first_received_at = models.DateTimeField()
    last_received_at = models.DateTimeField()
    delivery_count = models.PositiveIntegerField(default=1)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    key_fingerprint = models.CharField(
        max_length=16, blank=True, default="", help_text="Which configured key verified it."
    )

    class Meta:
        ordering = ["first_received_at", "id"]
        indexes = [
            models.Index(fields=["call", "first_received_at"], name="event_call_time_idx"),
            models.Index(fields=["event", "first_received_at"], name="event_name_time_idx"),
            models.Index(fields=["first_received_at"], name="event_time_idx"),
        ]
        # As Call.call_id: unique without PostgreSQL's extra LIKE index.
        constraints = [
            models.UniqueConstraint(fields=["body_sha256"], name="event_body_sha256_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.call_id}"

    @property
    def payload(self) -> Any:
        """What the delivery says: the call object under ``payload_key`` in ``raw_body``
        (webhooks, Retell API snapshots), or the whole body when there is no key (socket
        session summaries). Parsed on first use and kept until ``raw_body`` changes."""
        raw_body = self.raw_body
        cached = self.__dict__.get("_payload")
        if cached is not None and cached[0] is raw_body:
            return cached[1]
        document = fastjson.loads(raw_body)
        payload = document[self.payload_key] if self.payload_key else document
        self.__dict__["_payload"] = (raw_body, payload)
        return payload

    def remember_payload(self, payload: Any) -> None:
        """Tell the row what ``raw_body`` parses to, when the caller has just parsed it, so
        ``payload`` does not parse it again."""
        self.__dict__["_payload"] = (self.raw_body, payload)


class ResponderKind(models.TextChoices):
    SCRIPTED = "scripted"
    OPENAI = "openai", "OpenAI-compatible"


class AgentProfile(models.Model):
    """How the call socket answers for one Retell agent, chosen by the call's ``agent_id``.

    Calls whose agent has no active profile use the default profile from settings
    (``AGENT_PROFILE_FILE`` and ``AGENT_RESPONDER``); see calls/llm/profiles.py.
    """

    agent_id = models.CharField(
        max_length=128, unique=True, help_text="The Retell agent id this profile answers for."
    )
    name = models.CharField(max_length=255, blank=True, default="")
    is_active = models.BooleanField(default=True)
    responder = models.CharField(
        max_length=16, choices=ResponderKind.choices, default=ResponderKind.SCRIPTED
    )
    system_prompt = models.TextField(
        blank=True, default="", help_text="Model instructions; {{variable}} is substituted."
    )
    begin_message = models.TextField(
        blank=True,
        default="",
        help_text="The agent's first words; {{variable}} comes from the call's dynamic "
        "variables (and from_number, to_number, ...). Empty: wait for the caller.",
    )
    reminder_line = models.TextField(
        blank=True,
        default="",
        help_text="Said when the caller stays silent. Empty: the model re-engages them "
        "(scripted: a built-in line).",
    )
    fallback_line = models.TextField(
        blank=True,
        default="",
        help_text="Said when no rule matches, or when the model fails or times out.",
    )
    closing_line = models.TextField(
        blank=True, default="", help_text="Said before the scripted responder ends the call."
    )
    rules = JSONField(
        default=list,
        blank=True,
        help_text='Scripted: [{"keywords": ["hours"], "reply": "...", optional '
        '"end_call": true, "transfer_number": "+1...", "digit_to_press": "1"}].',
    )
    end_call_phrases = JSONField(
        default=list, blank=True, help_text='Scripted: caller phrases that end the call, ["bye"].'
    )
    model = models.CharField(
        max_length=128, blank=True, default="", help_text="Blank: OPENAI_MODEL."
    )
    temperature = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(2.0)],
        help_text="Blank: the endpoint's default.",
    )
    tools_enabled = models.BooleanField(
        default=True, help_text="Offer end_call, transfer_call and press_digit to the model."
    )
    transfer_number = models.CharField(
        max_length=64, blank=True, default="", help_text="Where transfer_call sends the caller."
    )
    base_url = models.URLField(
        max_length=512, blank=True, default="", help_text="Blank: OPENAI_BASE_URL."
    )
    api_key_env = models.CharField(
        max_length=64,
        blank=True,
        default="",
        validators=[RegexValidator(r"^[A-Z_][A-Z0-9_]*$", "An environment variable name.")],
        help_text="Name of the environment variable holding this endpoint's API key (keys "
        "stay out of the database). Blank: OPENAI_API_KEY.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["agent_id"]

    def __str__(self) -> str:
        return self.name or self.agent_id
