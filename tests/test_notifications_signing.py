from __future__ import annotations

import pytest
from django.utils import timezone

from notifications import signing
from tests.outbox import FORWARD_SECRET, verify_standard_webhook

# The Standard Webhooks specification's published test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_it_reproduces_the_specification_test_vector():
    assert (
        signing.signature(
            secret=SPEC_SECRET, message_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY
        )
        == SPEC_SIGNATURE
    )


def test_its_headers_verify_with_an_independent_verifier():
    body = b'{"type":"call_ended"}'
    headers = signing.headers(
        secret=FORWARD_SECRET,
        message_id="msg_1",
        timestamp=int(timezone.now().timestamp()),
        body=body,
    )
    assert verify_standard_webhook(secret=FORWARD_SECRET, headers=headers, body=body) == {
        "type": "call_ended"
    }
    with pytest.raises(AssertionError, match="signature"):
        verify_standard_webhook(secret=FORWARD_SECRET, headers=headers, body=body + b" ")


def test_it_generates_secrets_in_whsec_form():
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(signing.secret_key(secret)) == signing.SECRET_BYTES
    assert secret != signing.generate_secret()


@pytest.mark.parametrize("secret", ["", "MfKQ9r8GKYqrTwjU", "whsec_", "whsec_not base64!"])
def test_it_rejects_malformed_secrets(secret):
    assert not signing.is_valid_secret(secret)
