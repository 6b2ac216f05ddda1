"""Callback signatures verify with the standardwebhooks package itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from orchestrator.domain.webhook import event_body, new_secret, sign, signature_headers


def test_signature_verifies_with_the_reference_library() -> None:
    secret = new_secret()
    body = event_body("job.completed", 1_700_000_000.5, {"id": "job_1", "status": "completed"})
    now = int(datetime.now(UTC).timestamp())
    headers = signature_headers([secret], "msg_1", now, body)
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "job.completed"
    assert payload["data"]["id"] == "job_1"
    assert payload["timestamp"] == "2023-11-14T22:13:20.500000Z"


def test_every_secret_signs_during_a_rotation() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"job.failed"}'
    now = int(datetime.now(UTC).timestamp())
    headers = signature_headers([old, new], "msg_2", now, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)


def test_a_tampered_body_does_not_verify() -> None:
    secret = new_secret()
    now = int(datetime.now(UTC).timestamp())
    headers = signature_headers([secret], "msg_3", now, b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)


def test_sign_is_deterministic_given_its_inputs() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert sign(secret, "id", 1, b"x") == sign(secret, "id", 1, b"x")
    assert sign(secret, "id", 1, b"x") != sign(secret, "id", 2, b"x")


def test_body_is_compact_json_with_the_three_fields() -> None:
    body = json.loads(event_body("job.completed", 0, {"id": "j"}))
    assert set(body) == {"type", "timestamp", "data"}
