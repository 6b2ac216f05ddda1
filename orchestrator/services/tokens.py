"""API tokens: a recognisable prefix and a random secret, stored only as a SHA-256 hash.

The plain token is shown once, at creation. SHA-256 (not a slow password hash) fits: the
token has 256 random bits, so there is nothing to brute-force, and every request checks one.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from orchestrator.domain.records import Token
from orchestrator.ports import Clock, JobStore

TOKEN_PREFIX = "orch_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def hash_token(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def create_token(name: str, store: JobStore, clock: Clock) -> tuple[str, Token]:
    """Returns the plain token (to show once) and its stored record."""
    if not _NAME.match(name):
        raise ValueError(
            f"token name '{name}' must start with a letter or digit and hold only letters, "
            "digits, '.', '_' and '-' (at most 100)")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = store.add_token(name, plain[:12], hash_token(plain), clock.now())
    return plain, token


def authenticate(plain: str, store: JobStore) -> Token | None:
    """The live token for this secret, or None (unknown or revoked)."""
    if not plain.startswith(TOKEN_PREFIX) or len(plain) > 200:
        return None
    token = store.token_by_hash(hash_token(plain))
    if token is None or token.revoked_at is not None:
        return None
    return token
