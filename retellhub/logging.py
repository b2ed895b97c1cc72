"""Keep personal data and secrets out of every log line (design rule 8).

``RedactingFilter`` is attached to every handler in ``settings.LOGGING``, so it sees each
record exactly once on its way out, whichever logger emitted it (ours, Django's, the task
worker's). It renders the message, masks what looks like a phone number, a secret or a
transcript, and drops the arguments so that no handler can render the original again.

Patterns are deliberately conservative about *what counts as a phone number*: a plain run
of digits is also an epoch timestamp or a primary key, so only numbers written as numbers
(``+`` and digits, or the grouped national form) are masked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"

# Keys whose values are personal data or secrets wherever they appear: in ``extra``, or in
# a dict or JSON rendered into the message.
SENSITIVE_KEYS = frozenset(
    {
        "transcript",
        "transcript_object",
        "transcript_with_tool_calls",
        "content",
        "word",
        "call_summary",
        "from_number",
        "to_number",
        "transfer_destination",
        "body",
        "raw_body",
        "secret",
        "signing_secret",
        "password",
        "api_key",
        "authorization",
    }
)

_KEY_ALTERNATIVES = "|".join(sorted(SENSITIVE_KEYS, key=len, reverse=True))
# "key": "value" (JSON) or 'key': 'value' (a repr'd dict); escaped quotes stay inside.
_QUOTED_VALUE = re.compile(
    rf"""(?P<key>(?P<q>["'])(?:{_KEY_ALTERNATIVES})(?P=q)\s*:\s*)"""
    r"""(?P<v>["'])(?:\\.|(?!(?P=v)).)*(?P=v)""",
    re.DOTALL,
)
# Flat objects of caller-supplied values (Retell's dynamic variables are string maps):
# the whole object goes, since any value in it may name or number the caller.
SENSITIVE_OBJECT_KEYS = frozenset(
    {
        "retell_llm_dynamic_variables",
        "collected_dynamic_variables",
        "dynamic_variables",
        "custom_analysis_data",
    }
)
_OBJECT_ALTERNATIVES = "|".join(sorted(SENSITIVE_OBJECT_KEYS))
_FLAT_OBJECT = re.compile(
    rf"""(?P<key>(?P<q>["'])(?:{_OBJECT_ALTERNATIVES})(?P=q)\s*:\s*)\{{[^{{}}]*\}}"""
)
_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Slack incoming webhooks: the URL itself is the credential.
    re.compile(r"https://hooks\.slack\.com/\S+"),
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"),
    re.compile(r"\bkey_[A-Za-z0-9_]{6,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"),
    # +14155550123, +44 20 7946 0958, +1 (415) 555-0123
    re.compile(r"\+\d(?:[\s().-]{0,2}\d){6,14}"),
    # (415) 555-0123, 415-555-0123, 415.555.0123
    re.compile(r"(?<![\w+])\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?!\w)"),
)

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact_text(text: str, *, secrets: Iterable[str] = ()) -> str:
    """``text`` with phone numbers, secrets and sensitive quoted values masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _FLAT_OBJECT.sub(lambda match: f'{match["key"]}"{REDACTED}"', text)
    text = _QUOTED_VALUE.sub(lambda match: f'{match["key"]}"{REDACTED}"', text)
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def configured_secrets() -> list[str]:
    """Secret values from settings, masked verbatim even where no pattern would catch them."""
    from django.conf import settings

    if not settings.configured:
        return []
    values = [
        getattr(settings, "SECRET_KEY", ""),
        getattr(settings, "SLACK_WEBHOOK_URL", ""),
        getattr(settings, "FORWARD_SIGNING_SECRET", ""),
        *getattr(settings, "RETELL_API_KEYS", []),
    ]
    # Very short values would mask ordinary words; real secrets are long.
    return [value for value in values if isinstance(value, str) and len(value) >= 8]


def _redact_value(name: str, value: Any, secrets: list[str]) -> Any:
    if name.lower() in SENSITIVE_KEYS | SENSITIVE_OBJECT_KEYS:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value, secrets=secrets)
    return value


class RedactingFilter(logging.Filter):
    """Rewrites each record in place; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = configured_secrets()
        record.msg = redact_text(record.getMessage(), secrets=secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # Formatters print exc_text when it is set, so the traceback goes out masked.
            record.exc_text = redact_text(record.exc_text, secrets=secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, secrets=secrets)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRIBUTES:
                setattr(record, name, _redact_value(name, value, secrets))
        return True
