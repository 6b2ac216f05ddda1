"""Checks of what a client sends that its JSON schema alone does not catch.

Each returns a problem to report (a sentence), or None. They exist because some values
pass a schema but break later, far from the request: a lone surrogate cannot be encoded,
NaN is not JSON, a NUL cannot be stored in a PostgreSQL text column, and a URL with a bad
host label makes every delivery attempt fail before it is sent.
"""

from __future__ import annotations

import json
import math
from urllib.parse import urlsplit


def json_problem(value: object, what: str) -> str | None:
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except ValueError as exc:
        if isinstance(exc, UnicodeEncodeError):
            return f"{what} hold text that is not valid Unicode (a lone surrogate)"
        return f"{what} hold NaN or Infinity, which JSON does not allow"
    except RecursionError:
        return f"{what} are nested too deeply"
    return None


def text_problem(value: str, what: str) -> str | None:
    if "\x00" in value:
        return f"{what} holds a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} is not valid Unicode (a lone surrogate)"
    return None


def url_problem(url: str, what: str = "callback_url") -> str | None:
    """An http(s) URL with a host that can be resolved and connected to."""
    problem = text_problem(url, what)
    if problem:
        return problem
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{what} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{what} must be an http:// or https:// URL with a host"
    if "@" in parts.netloc:
        # Credentials would be stored and shown in clear with the URL; receivers check
        # the signature instead.
        return (f"{what} may not carry credentials (user:password@); receivers verify "
                "the webhook signature instead")
    if port is not None and not 0 < port < 65536:
        return f"{what} has port {port}, outside 1-65535"
    return _host_problem(parts.hostname, what)


def _host_problem(host: str, what: str) -> str | None:
    if host.startswith("[") or ":" in host:
        return None  # an IPv6 literal, already checked by urlsplit
    try:
        labels = host.rstrip(".").encode("idna").split(b".")
    except UnicodeError:
        return f"{what} has a host name that cannot be encoded ('{host}')"
    if any(not label or len(label) > 63 for label in labels):
        return f"{what} has a host name with an empty or over-long label ('{host}')"
    return None


def finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)
