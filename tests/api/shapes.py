"""What each endpoint answers for the ``pinned_call`` fixture, compared whole.

One expected-JSON constant per endpoint, so a field change shows up as a test diff.
"""

from __future__ import annotations

CALL_ROW = {
    "call_id": "call_pinned",
    "agent_id": "agent_reception",
    "agent_name": "Reception",
    "call_type": "phone_call",
    "direction": "inbound",
    "from_number": "+14155550123",
    "to_number": "+14155559876",
    "status": "ended",
    "started_at": "2026-01-05T09:00:00Z",
    "ended_at": "2026-01-05T09:01:00Z",
    "duration_ms": 60000,
    "disconnection_reason": "user_hangup",
    "user_sentiment": "Positive",
    "call_successful": True,
    "combined_cost": 12.5,
    "last_event": "call_analyzed",
    "last_event_at": "2026-01-05T09:01:00Z",
    "event_count": 1,
}
EVENT_ROW = {
    "id": 1,
    "call_id": "call_pinned",
    "event": "call_ended",
    "source": "webhook",
    "payload_key": "call",
    "first_received_at": "2026-01-05T09:01:00Z",
    "last_received_at": "2026-01-05T09:01:00Z",
    "delivery_count": 1,
}
CALL_DETAIL = {
    **{key: value for key, value in CALL_ROW.items() if key != "event_count"},
    "agent_version": 3,
    "recording_url": "https://example.com/recording.wav",
    "public_log_url": "https://example.com/public.log",
    "metadata": {"crm": "c-1"},
    "dynamic_variables": None,
    "collected_dynamic_variables": None,
    "latency": None,
    "analysis": {
        "call_summary": "The caller needed help.",
        "user_sentiment": "Positive",
        "call_successful": True,
        "in_voicemail": False,
        "custom_analysis_data": {"booked": True},
    },
    "events": [{key: value for key, value in EVENT_ROW.items() if key != "call_id"}],
}
TRANSCRIPT = {
    "call_id": "call_pinned",
    "text": "Agent: Hello.\nUser: Hi, I need help.\n",
    "turns": [
        {"role": "agent", "content": "Hello."},
        {"role": "user", "content": "Hi, I need help."},
    ],
}
RAW_EVENT = {
    **EVENT_ROW,
    "body_sha256": "b" * 64,
    "source_ip": "100.20.5.228",
    "key_fingerprint": "fp_test",
    "payload": {"call_id": "call_pinned", "call_status": "ended"},
    "raw_body": '{"event":"call_ended","call":{"call_id":"call_pinned","call_status":"ended"}}',
}
