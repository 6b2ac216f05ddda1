"""``SecretBox``: callback endpoints' signing secrets encrypted at rest (Fernet: AES-128-CBC
with an HMAC-SHA256 tag), so a database dump holds none in clear.

The key is derived (HKDF-SHA256) from ``[callbacks].signing_secret``; several secrets (a
rotation of that secret) give several keys, the first encrypting and any decrypting, so
values written under the old one stay readable.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"orchestrator callback endpoint secrets v1"


def _fernet(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("a SecretBox needs at least one secret")
        self._box = MultiFernet([_fernet(secret) for secret in secrets])

    def seal(self, plain: str) -> str:
        return self._box.encrypt(plain.encode()).decode()

    def open_or_none(self, sealed: str) -> str | None:
        try:
            return self.open(sealed)
        except ValueError:
            return None

    def open(self, sealed: str) -> str:
        try:
            return self._box.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "a callback endpoint's secret cannot be decrypted: [callbacks].signing_secret "
                "changed since it was stored; put the old secret back, or rotate the "
                "endpoint's secret ('orchestrator callbacks rotate-secret ID')") from None
