"""A callback receiver that verifies Standard Webhooks signatures: for the demo and tests.

It keeps every delivery it accepted, by ``webhook-id``, and can be told to fail the first
attempts of each event (with a status and ``Retry-After``) to exercise retries.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    webhook_id: str
    body: dict[str, Any]
    at: float


@dataclass
class FailFirst:
    attempts: int = 0  # fail this many attempts of each event
    status: int = 503
    retry_after: float | None = None


@dataclass
class ReceiverState:
    secret: str
    fail_first: FailFirst = field(default_factory=FailFirst)
    accepted: dict[str, Received] = field(default_factory=dict)
    attempts: dict[str, list[float]] = field(default_factory=dict)
    duplicates: int = 0
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: ReceiverState

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload = Webhook(self.state.secret).verify(body, headers)
        except WebhookVerificationError:
            with self.state.lock:
                self.state.bad_signatures += 1
            self._answer(400)
            return
        self._accept(headers["webhook-id"], payload)

    def _accept(self, webhook_id: str, payload: dict[str, Any]) -> None:
        state = self.state
        with state.lock:
            tries = state.attempts.setdefault(webhook_id, [])
            tries.append(time.time())
            if len(tries) <= state.fail_first.attempts:
                fail = state.fail_first
                self._answer(fail.status, fail.retry_after)
                return
            if webhook_id in state.accepted:
                state.duplicates += 1
            else:
                state.accepted[webhook_id] = Received(webhook_id, payload, time.time())
        self._answer(204)

    def _answer(self, status: int, retry_after: float | None = None) -> None:
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", f"{retry_after:g}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: senders with more connections in flight
    # (the worker posts a round of callbacks at once) would have theirs dropped and
    # retried a second later, as a busy real receiver's would not.
    request_queue_size = 128


class CallbackReceiver:
    def __init__(self, secret: str, fail_first: FailFirst | None = None) -> None:
        self.state = ReceiverState(secret, fail_first or FailFirst())
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.accepted.values())

    def job_ids(self) -> set[str]:
        return {r.body["data"]["id"] for r in self.events()}

    def summary(self) -> dict[str, Any]:
        with self.state.lock:
            return {"accepted": len(self.state.accepted), "duplicates": self.state.duplicates,
                    "bad_signatures": self.state.bad_signatures,
                    "attempts": sum(len(v) for v in self.state.attempts.values())}


def event_types(events: list[Received]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        kind = str(event.body.get("type"))
        counts[kind] = counts.get(kind, 0) + 1
    return counts


__all__ = ["CallbackReceiver", "FailFirst", "Received", "event_types"]
