"""Callback payloads and their Standard Webhooks signatures.

The scheme (https://www.standardwebhooks.com): the secret is ``whsec_`` + base64 key bytes;
the signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature header is
``v1,<base64 HMAC-SHA256>``, several separated by spaces while secrets rotate. ``sign`` takes
the timestamp as an argument so it is tested without a clock, and the tests check every
signature with the ``standardwebhooks`` package itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(
    secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every given secret."""
    signatures = " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def event_body(event_type: str, at: float, data: Mapping[str, object]) -> bytes:
    """The exact bytes sent (and signed) on every attempt of one delivery."""
    payload = {"type": event_type, "timestamp": rfc3339(at), "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
