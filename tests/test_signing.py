from __future__ import annotations

import json

import pytest
from retell.lib import webhook_auth

from calls import signing

KEY = "key_demo_7f3a9c2e"
T = 1767225600000
DEMO_BODY = (
    b'{"event":"call_started","call":{"call_id":"call_demo123","agent_id":"agent_demo456",'
    b'"call_type":"web_call","call_status":"ongoing"}}'
)
DEMO_DIGEST = "a596bfb4f7893a24b6e76276da63393c370ff9a15e81ac4d54015819238d002a"


def verify(body: bytes, header: str | None, *, keys: list[str] | None = None, now: int = T):
    return signing.verify(body=body, header=header, keys=keys or [KEY], now_ms=now)


def reason(body: bytes, header: str | None, **kwargs) -> str:
    with pytest.raises(signing.SignatureError) as caught:
        verify(body, header, **kwargs)
    return caught.value.reason


def test_it_reproduces_the_documented_worked_example():
    assert len(DEMO_BODY) == 132
    assert signing.sign(DEMO_BODY, KEY, T) == f"v={T},d={DEMO_DIGEST}"


def test_it_reproduces_the_sdk_test_vector():
    digest = signing.digest(b'{"event":"call_ended"}', "test-api-key", 1700000000000)
    assert digest == "07024cabe7dd8f6d1c6e4a8324ca92c812e6ad4a7ee506c04f7e462e3321823e"


def test_it_accepts_a_valid_signature():
    match = verify(DEMO_BODY, f"v={T},d={DEMO_DIGEST}")
    assert match.key_index == 0
    assert match.timestamp_ms == T
    assert match.key_fingerprint == signing.key_fingerprint(KEY)


def test_it_accepts_the_second_configured_key_and_says_so():
    header = signing.sign(DEMO_BODY, "key_new", T)
    match = verify(DEMO_BODY, header, keys=[KEY, "key_new"])
    assert match.key_index == 1
    assert match.key_fingerprint == signing.key_fingerprint("key_new")


def test_it_rejects_a_wrong_key():
    assert reason(DEMO_BODY, signing.sign(DEMO_BODY, "key_other", T)) == "bad_digest"


def test_it_rejects_a_tampered_body():
    header = signing.sign(DEMO_BODY, KEY, T)
    assert reason(DEMO_BODY.replace(b"ongoing", b"ended__"), header) == "bad_digest"


@pytest.mark.parametrize("offset", [300_000, -300_000, 0])
def test_it_accepts_timestamps_up_to_exactly_five_minutes_away(offset: int):
    header = signing.sign(DEMO_BODY, KEY, T)
    assert verify(DEMO_BODY, header, now=T + offset).timestamp_ms == T


def test_it_rejects_a_stale_timestamp_one_millisecond_past_the_window():
    header = signing.sign(DEMO_BODY, KEY, T)
    assert reason(DEMO_BODY, header, now=T + 300_001) == "stale_timestamp"


def test_it_rejects_a_future_timestamp_one_millisecond_past_the_window():
    header = signing.sign(DEMO_BODY, KEY, T)
    assert reason(DEMO_BODY, header, now=T - 300_001) == "future_timestamp"


def test_it_rejects_a_missing_header():
    assert reason(DEMO_BODY, None) == "missing_header"
    assert reason(DEMO_BODY, "") == "missing_header"


@pytest.mark.parametrize(
    "header",
    [
        f"v={T},d={DEMO_DIGEST.upper()}",
        f"v={T}, d={DEMO_DIGEST}",
        f" v={T},d={DEMO_DIGEST}",
        f"v={T},d={DEMO_DIGEST} ",
        f"v={T},d={DEMO_DIGEST[:-1]}",
        f"v={T},d={DEMO_DIGEST}0",
        f"d={DEMO_DIGEST},v={T}",
        f"v=-{T},d={DEMO_DIGEST}",
        f"v={T}",
        DEMO_DIGEST,
        "v=99999999999999999999999,d=" + DEMO_DIGEST,
        "garbage",
    ],
)
def test_it_rejects_a_malformed_header(header: str):
    assert reason(DEMO_BODY, header) == "malformed_header"


def test_it_rejects_everything_when_no_key_is_configured():
    with pytest.raises(signing.SignatureError) as caught:
        signing.verify(body=DEMO_BODY, header=f"v={T},d={DEMO_DIGEST}", keys=[], now_ms=T)
    assert caught.value.reason == "no_key_configured"


def test_it_verifies_a_body_with_non_ascii_text():
    body = '{"event":"call_ended","call":{"call_id":"c1","metadata":{"name":"José"}}}'.encode()
    header = f"v={T},d=6e68f2082952cd393e256085372baa8d1b2799a216dd010c606e8b48cd591364"
    assert verify(body, header).key_index == 0


def test_it_verifies_the_bytes_not_a_reserialisation_of_them():
    body = b'{\n  "event": "call_ended",\n  "call": {"call_id": "c1", "name": "Jos\\u00e9"}\n}'
    header = signing.sign(body, KEY, T)
    assert verify(body, header).key_index == 0
    reserialised = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
    assert reserialised.encode() != body
    assert reason(reserialised.encode(), header) == "bad_digest"


@pytest.mark.parametrize("offset", [0, 299_999, -300_000, 300_001, -300_001])
def test_it_agrees_with_retell_sdk_verify(offset: int):
    header = signing.sign(DEMO_BODY, KEY, T)
    sdk = webhook_auth.symmetric["verify"](
        DEMO_BODY.decode(), KEY, header, {"timestamp": T + offset, "timeout": 300_000}
    )
    try:
        ours = verify(DEMO_BODY, header, now=T + offset) is not None
    except signing.SignatureError:
        ours = False
    assert ours is sdk
