"""Running the sandbox: in a background thread for tests and the demo (``SandboxServer``),
or in the foreground for ``orchestrator sandbox`` (``serve``)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from orchestrator.sandbox.app import SandboxApp, create_app
from orchestrator.sandbox.settings import SandboxSettings


def _bind(host: str, port: int) -> socket.socket:
    # Binding before uvicorn starts is how port 0 becomes a known free port, with no race
    # between picking a port and listening on it.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on
    # sockets that say so, and without it every answer waits ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn, telling the sandbox when it stops so that waiting requests answer at once
    (a long poll says 408, a log stream ends) rather than being cancelled mid-answer."""

    def __init__(self, config: uvicorn.Config, app: SandboxApp) -> None:
        super().__init__(config)
        self._state = app.state.sandbox

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._state.closing = asyncio.Event()  # bound to this run's loop
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._state.closing.set()
        await super().shutdown(sockets)


def _config(app: Any, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "http": "h11",
        "ws": "none",
        "lifespan": "off",
        # Long polls and log streams would otherwise hold a shutdown for up to 110 s.
        "timeout_graceful_shutdown": 1,
        # Longer than the clients' keep-alive expiry, so a pooled connection is never
        # closed by the server just as a client reuses it.
        "timeout_keep_alive": 75,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class SandboxServer:
    """The sandbox on a real socket in a background thread::

        with SandboxServer(SandboxSettings(default_duration_s=0.05)) as sandbox:
            CordageProvider("sandbox", f"{sandbox.url}/cordage", ...)

    ``port=0`` picks a free port. The admin helpers (``stats``, ``runs``, ``configure``,
    ``reset``) go through the admin API, so they are safe from any thread.
    """

    def __init__(
        self, settings: SandboxSettings | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.settings = settings or SandboxSettings()
        self.host = host
        self.port = port
        self.app = create_app(self.settings)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._admin: httpx.Client | None = None

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:53127``."""
        return _url(self.host, self.port)

    @property
    def cordage_url(self) -> str:
        return f"{self.url}/cordage"

    @property
    def codewords_url(self) -> str:
        return f"{self.url}/codewords"

    def start(self, timeout_s: float = 10.0) -> SandboxServer:
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = _config(self.app, log_config=None, log_level="warning", access_log=False)
        server = _Server(config, self.app)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="sandbox-server", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError(f"the sandbox server did not start on {self.url}")
            time.sleep(0.01)
        self._admin = httpx.Client(base_url=f"{self.url}/_sandbox", timeout=10.0)
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=5.0)
        if thread.is_alive():  # something still holds a connection open: stop waiting
            server.force_exit = True
            thread.join(timeout=5.0)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._admin is None:
            raise RuntimeError("the sandbox server is not running")
        response = self._admin.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def runs(self, **filters: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/runs", params=filters)["runs"]
        return result

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings at runtime, e.g. ``configure(p_503=0.1, rate_limits={...})``."""
        result: dict[str, Any] = self._call("PUT", "/settings", json=changes)
        return result

    def reset(self, *, settings: bool = True) -> None:
        """Forget every run and count; by default also restore the starting settings."""
        self._call("POST", "/reset", params={"settings": str(settings).lower()})

    def expire_file(self, file_id: str) -> None:
        self._call("DELETE", f"/files/{file_id}")


def serve(
    host: str = "127.0.0.1", port: int = 8090, settings: SandboxSettings | None = None
) -> None:
    """Run the sandbox in the foreground until interrupted (``orchestrator sandbox``)."""
    sock = _bind(host, port)
    url = _url(host, sock.getsockname()[1])
    print(
        f"sandbox provider on {url}\n"
        f"  Cordage base URL:   {url}/cordage\n"
        f"  CodeWords base URL: {url}/codewords\n"
        f"  admin API:          {url}/_sandbox/ (docs at {url}/_sandbox/docs)",
        file=sys.stderr,
        flush=True,
    )
    app = create_app(settings)
    _Server(_config(app, log_level="info"), app).run(sockets=[sock])
