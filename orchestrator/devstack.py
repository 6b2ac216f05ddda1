"""The whole product on one machine: what ``orchestrator dev`` and ``demo`` start.

An embedded Redis server, SQLite, the sandbox provider, the API, Celery workers and beat,
each a real process (the sandbox a thread), configured through a generated
``orchestrator.toml`` exactly as a user's would be. Every process started is stopped at the
end, whatever happens. The integration tests drive the same stack.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from orchestrator.adapters.embedded import Child, EmbeddedRedis, free_port, python_module
from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.migrate import upgrade
from orchestrator.config import Settings, load_settings
from orchestrator.domain.webhook import new_secret
from orchestrator.sandbox.server import SandboxServer
from orchestrator.sandbox.settings import RateLimits as SandboxRates
from orchestrator.sandbox.settings import SandboxSettings

SANDBOX_KEY = "sandbox-key"


@dataclass
class StackOptions:
    workdir: Path
    workers: int = 1
    concurrency: int = 4
    beat: bool = True
    api_port: int | None = None
    persistent_redis: bool = False
    sandbox: SandboxSettings = field(default_factory=lambda: SandboxSettings(
        api_key=SANDBOX_KEY, rate_limits=SandboxRates(
            cordage_trigger=None, cordage_read=None, cordage_kill=None)))
    # Short timings make a laptop stack (and tests) recover from lost messages quickly.
    poll_initial_s: float = 0.5
    poll_max_s: float = 5.0
    sweep_interval_s: float = 1.0
    sweep_grace_s: float = 5.0
    launch_lease_s: float = 35.0  # must outlast one provider request (30 s)
    callback_retry_s: tuple[float, ...] = (1, 2, 5, 10, 30, 60)
    reconcile_settle_s: float = 5.0
    # Appended to the generated orchestrator.toml (more providers, say).
    extra_config: str = ""
    # Our own limits on both sandbox providers, e.g. {"trigger": "20/2s"}, and their cap.
    rate_limits: dict[str, str] = field(default_factory=dict)
    max_in_flight: int | None = None
    fresh: bool = False  # wipe the work directory first
    # Extra environment for the stack's processes (ORCHESTRATOR_LOG_FORMAT=json, say).
    env: dict[str, str] = field(default_factory=dict)


def render_config(options: StackOptions, redis_url: str, sandbox_url: str) -> str:
    workdir = options.workdir.resolve()
    poll = (f"{{ initial_s = {options.poll_initial_s}, factor = 1.5, "
            f"max_s = {options.poll_max_s}, jitter = 0.2 }}")
    retry = ", ".join(str(s) for s in options.callback_retry_s)
    key_file = workdir / "sandbox_key"
    limits = ", ".join(f'{op} = "{rate}"' for op, rate in options.rate_limits.items())
    provider = ('type = "sandbox"\nbase_url = "{url}"\napi_key = "file:{key_file}"\n'
                'run_timeout_s = 600\nresult_wait_s = 0\npoll = {poll}\n'
                + (f"rate_limits = {{{{ {limits} }}}}\n" if limits else "")
                + (f"max_in_flight = {options.max_in_flight}\n" if options.max_in_flight else ""))
    return f"""# Written by `orchestrator dev`: the embedded default. Edit a copy, not this file.
[database]
url = "sqlite:///{workdir}/orchestrator.db"

[redis]
url = "{redis_url}"

[providers.sandbox]
{provider.format(url=sandbox_url, poll=poll, key_file=key_file)}protocol = "cordage"

[providers.sandbox-codewords]
{provider.format(url=sandbox_url, poll=poll, key_file=key_file)}protocol = "codewords"

[callbacks]
timeout_s = 5
allow_private_networks = true
signing_secret = "file:{workdir}/signing_secret"
retry_schedule_s = [{retry}]

[artifacts]
url = "file://{workdir}/artifacts"

[jobs]
launch_lease_s = {options.launch_lease_s}
sweep_interval_s = {options.sweep_interval_s}
sweep_grace_s = {options.sweep_grace_s}
reconcile_settle_s = {options.reconcile_settle_s}
{options.extra_config.replace("{sandbox}", sandbox_url)}"""


class Stack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.workdir = options.workdir
        self.redis = EmbeddedRedis(self.workdir / "redis", persistent=options.persistent_redis)
        self.sandbox = SandboxServer(options.sandbox)
        self.api_port = options.api_port or free_port()
        self.children: list[Child] = []
        self.workers: list[Child] = []
        self.beats: list[Child] = []
        self.api: Child | None = None
        self.settings: Settings | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "orchestrator.toml"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def env(self) -> dict[str, str]:
        # Plain text logs on a laptop, unless the caller's environment chose a format.
        log_format = os.environ.get("ORCHESTRATOR_LOG_FORMAT") or "text"
        return {"ORCHESTRATOR_LOG_FORMAT": log_format, **self.options.env,
                "ORCHESTRATOR_CONFIG": str(self.config_path.resolve())}

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self._prepare_workdir()
        self.redis.start()
        self.sandbox.__enter__()
        self.config_path.write_text(render_config(self.options, self.redis.url,
                                                  self.sandbox.url))
        self.settings = load_settings(self.config_path, env=self.env)
        upgrade(make_engine(self.settings.database.url))
        self.api = self._spawn("api", python_module("orchestrator", "api", "--host",
                                                    "127.0.0.1", "--port", str(self.api_port)))
        for _ in range(self.options.workers):
            self.start_worker()
        if self.options.beat:
            self.start_beat()
        self._wait_for_api()

    def _prepare_workdir(self) -> None:
        if self.options.fresh and self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        _write_secret(self.workdir / "sandbox_key", self.options.sandbox.api_key)
        secret = self.workdir / "signing_secret"
        if not secret.exists():
            _write_secret(secret, new_secret())

    def _celery(self, *args: str) -> list[str]:
        return python_module("celery", "-A", "workers", *args, "--loglevel", "INFO")

    def _spawn(self, name: str, argv: list[str]) -> Child:
        child = Child(name, argv, log_path=self.workdir / "logs" / f"{name}.log", env=self.env)
        self.children.append(child.start())
        return child

    def start_worker(self) -> Child:
        index = len(self.workers) + 1
        argv = self._celery("worker", "--hostname", f"worker{index}@%h",
                            "--concurrency", str(self.options.concurrency),
                            "--queues", "orchestrator.jobs,orchestrator.callbacks",
                            "--without-mingle", "--without-gossip")
        worker = self._spawn(f"worker{index}", argv)
        self.workers.append(worker)
        return worker

    def start_beat(self) -> Child:
        """One more beat process (each with its own schedule file): any number may run."""
        started = sum(child.name.startswith("beat") for child in self.children)
        name = f"beat{started + 1}" if started else "beat"
        beat = self._spawn(name, self._celery("beat", "--schedule",
                                              str(self.workdir / f"{name}-schedule")))
        self.beats.append(beat)
        return beat

    def _wait_for_api(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.api is not None and not self.api.alive:
                break
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        tail = self.api.tail() if self.api else ""
        raise RuntimeError(f"the API did not start on {self.api_url}:\n{tail}")

    def stop(self) -> None:
        for child in reversed(self.children):
            child.signal(signal.SIGTERM)
        for child in reversed(self.children):
            child.stop()
        self.sandbox.__exit__(None, None, None)
        self.redis.stop()


def _write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n")
    path.chmod(0o600)
