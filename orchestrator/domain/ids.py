"""Identifiers: a type prefix and a ULID-style body (48-bit milliseconds + 80 random bits,
Crockford base32), so ids sort by creation time and a list cursor is simply an id."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str, now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    return f"{prefix}_{_encode((millis << 80) | secrets.randbits(80))}"


def new_ids(prefix: str, count: int, now: float | None = None) -> list[str]:
    """``count`` ids of one instant that sort in the order they are returned: the random
    part of the first is counted up by one for each next (a monotonic ULID), so a batch's
    job ids sorted are its jobs in input order. The first random part has its top bit
    clear, so counting up never carries into the time."""
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    start = (millis << 80) | secrets.randbits(79)
    return [f"{prefix}_{_encode(start + n)}" for n in range(count)]


def _encode(value: int) -> str:
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))
