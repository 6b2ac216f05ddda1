"""The one way this process makes outgoing HTTP clients.

A single keep-alive ``httpx.Client`` per process is the fast path: reusing connections is
worth about 60× over a client per request against a local server (see QUALITY.md). The
composition root (``orchestrator.bootstrap.Container.http``) holds that one client, made
after Celery's fork. The transport is injectable, so a test can stand a plain function
(``httpx.MockTransport``) in for a server.
"""

from __future__ import annotations

import httpx

USER_AGENT = "orchestrator/0.1 (+httpx)"

# Below the 5 s idle time-out of common servers (uvicorn's default), so a pooled
# connection is dropped by us before the server closes it under a request being sent.
KEEPALIVE_EXPIRY_S = 4.0


def make_http_client(
    *, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """A new client with a keep-alive pool, every time-out explicit and redirects off.

    ``timeout_s`` bounds reading and writing; connecting and waiting for a pooled
    connection get at most 5 s, so an unreachable host fails fast and unambiguously
    (nothing was sent). Redirects are not followed: a provider that redirects is
    misconfigured, and a callback receiver must not steer us elsewhere.
    """
    short = min(timeout_s, 5.0)
    return httpx.Client(
        timeout=httpx.Timeout(connect=short, read=timeout_s, write=timeout_s, pool=short),
        limits=httpx.Limits(
            max_connections=100,
            max_keepalive_connections=100,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
        ),
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )

