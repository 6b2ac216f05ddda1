"""Settings from ``orchestrator.toml`` (or ``$ORCHESTRATOR_CONFIG``) and the environment.

Validated once at start-up: a wrong or missing value raises ``ConfigError`` with one message
that names each offending key and says what is expected, and the process stops there rather
than failing later in a worker. Secrets are written ``env:NAME`` or ``file:/path``; they are
resolved here into ``Secret`` values whose ``repr`` and ``str`` never show the secret.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestrator.domain.backoff import BackoffPolicy
from orchestrator.domain.events import CALLBACK_RETRY_S
from orchestrator.domain.ratelimit import RateLimit, parse_rate_limit
from orchestrator.domain.schedule import MAX_CATCHUP_WINDOW_S, Catchup, Overlap
from orchestrator.services.schedules import ScheduleSpec, check_definition

CONFIG_ENV = "ORCHESTRATOR_CONFIG"
DEFAULT_CONFIG_FILE = "orchestrator.toml"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and what to write."""


class Secret:
    """A resolved secret. Shows where it came from, never what it is."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def resolve_secret(value: object) -> Secret:
    """``env:NAME`` → that variable, ``file:/path`` → the file's content, else the literal;
    surrounding whitespace stripped (a trailing newline is common in mounted secrets)."""
    secret = _resolve(value)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in secret.reveal()):
        raise ValueError(f"the secret from {secret.source} holds control characters "
                         "(a line break inside it?); it cannot be sent in a header")
    return secret


def _resolve(value: object) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("expected a secret such as 'env:NAME' or 'file:/path'")
    if value.startswith("env:"):
        name = value[4:]
        resolved = os.environ.get(name, "").strip()
        if not resolved:
            raise ValueError(f"environment variable {name} is not set (the value is '{value}')")
        return Secret(resolved, value)
    if value.startswith("file:"):
        path = Path(value[5:]).expanduser()
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
        if not text:
            raise ValueError(f"secret file {path} is empty")
        return Secret(text, value)
    return Secret(value, "inline value")


SecretValue = Annotated[Secret, BeforeValidator(resolve_secret)]


def _check_rate_limit(value: object) -> RateLimit:
    if isinstance(value, RateLimit):
        return value
    if not isinstance(value, str):
        raise ValueError("expected '<count>/<period>' such as '60/minute' or '10/6s'")
    return parse_rate_limit(value)


RateLimitValue = Annotated[RateLimit, BeforeValidator(_check_rate_limit)]


def _check_http_url(value: object) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


HttpUrl = Annotated[str, BeforeValidator(_check_http_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class DatabaseSettings(_Section):
    url: str = "sqlite:///./.orchestrator/orchestrator.db"

    @field_validator("url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "postgresql")):
            raise ValueError(
                "expected 'sqlite:///path/to/file.db' or 'postgresql+psycopg://user:pw@host/db'"
            )
        return url


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected 'redis://host:port/db' (or rediss:// / unix://)")
        return url


class RateLimits(_Section):
    trigger: RateLimitValue | None = None
    read: RateLimitValue | None = None
    cancel: RateLimitValue | None = None


class PollSettings(_Section):
    initial_s: float = Field(2.0, gt=0)
    factor: float = Field(1.5, ge=1.0)
    max_s: float = Field(30.0, gt=0)
    jitter: float = Field(0.2, ge=0.0, lt=1.0)

    def policy(self) -> BackoffPolicy:
        return BackoffPolicy(self.initial_s, self.factor, self.max_s, self.jitter)


# Each runtime type's documented limits; the file may lower or raise them.
DOCUMENTED_LIMITS: dict[str, dict[str, str]] = {
    "cordage": {"trigger": "60/minute", "read": "120/minute", "cancel": "30/minute"},
    "codewords": {},
    "sandbox": {},
}


class ProviderSettings(_Section):
    type: Literal["codewords", "cordage", "sandbox"]
    base_url: HttpUrl
    api_key: SecretValue
    max_in_flight: int | None = Field(None, gt=0)
    rate_limits: RateLimits = RateLimits()
    poll: PollSettings = PollSettings()
    run_timeout_s: float = Field(1800.0, gt=0)
    # CodeWords: seconds /result may hold a poll open; kept short so a poll never ties up
    # a worker for long.
    result_wait_s: float = Field(1.0, ge=0, le=110)
    # Cordage: the kill path is not documented; kept here so it can be corrected in config.
    kill_path: str = "/{webhook_key}/runs/{run_id}/kill"
    # sandbox: which wire protocol the sandbox provider is driven through.
    protocol: Literal["cordage", "codewords"] = "cordage"

    @model_validator(mode="before")
    @classmethod
    def _documented_limits(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("type"), str):
            defaults = DOCUMENTED_LIMITS.get(data["type"], {})
            given = data.get("rate_limits") or {}
            if isinstance(given, dict):
                data = {**data, "rate_limits": {**defaults, **given}}
        return data

    @property
    def protocol_type(self) -> str:
        """The wire protocol spoken: the sandbox speaks either runtime's."""
        return self.protocol if self.type == "sandbox" else self.type


class CallbackSettings(_Section):
    timeout_s: float = Field(10.0, gt=0, le=120)
    allow_private_networks: bool = False
    allowed_networks: list[str] = []
    signing_secret: SecretValue | None = None
    # Seconds before each retry of a failed delivery (Svix's schedule); after the last one
    # the delivery stays failed in the log, replayable.
    retry_schedule_s: list[float] = Field(
        list(CALLBACK_RETRY_S), min_length=1, max_length=30)
    # An endpoint whose every attempt has failed for this long is disabled.
    disable_after_s: float = Field(5 * 86_400, gt=0)

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"'{value}' is not a subnet such as '10.1.2.0/24'") from None
        return values

    @field_validator("signing_secret")
    @classmethod
    def _whsec(cls, secret: Secret | None) -> Secret | None:
        if secret is None:
            return None
        expected = "expected a Standard Webhooks secret: 'whsec_' and base64 key bytes"
        text = secret.reveal()
        if not text.startswith("whsec_"):
            raise ValueError(expected)
        try:
            base64.b64decode(text.removeprefix("whsec_"), validate=True)
        except ValueError:
            raise ValueError(expected + " (the part after 'whsec_' is not base64)") from None
        return secret


class ArtifactSettings(_Section):
    url: str = "file://./.orchestrator/artifacts"


# One provider request may take this long at most (connect, write and read time-outs of
# the shared client); a launch lease must outlast it.
PROVIDER_REQUEST_MAX_S = 30.0


class JobSettings(_Section):
    """Limits and timings of job handling (not in PRODUCT.md's example; all optional)."""

    max_input_bytes: int = Field(1_048_576, gt=0)
    # The largest body of one ``POST /v1/batches`` (up to 10,000 jobs): 64 MiB by default,
    # about 6.5 KiB of inputs per job of a full batch. Larger batches are sent in parts.
    max_batch_bytes: int = Field(64 * 1024 * 1024, gt=0)
    # A claimed launch is owned for this long; after it a sweep may take it over.
    # Renewed before each remote call, so it must outlast one call (connect + read time-outs)
    # and a database wait with room to spare.
    launch_lease_s: float = Field(120.0, gt=0)
    sweep_interval_s: float = Field(5.0, gt=0)
    # How late a step must be before a sweep hands it out again.
    sweep_grace_s: float = Field(30.0, ge=0)
    # Reconciling a start whose answer was lost (Cordage): a start not among the listed runs
    # this long after it was sent never took effect; after the window the job fails.
    reconcile_settle_s: float = Field(10.0, gt=0)
    reconcile_window_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _window_outlasts_settling(self) -> JobSettings:
        settling = self.reconcile_settle_s + PROVIDER_REQUEST_MAX_S
        if self.reconcile_window_s <= settling:
            raise ValueError(f"reconcile_window_s must be more than reconcile_settle_s + "
                             f"{PROVIDER_REQUEST_MAX_S:g} s ({settling:g} s): settling counts "
                             "from when a start can no longer be on its way")
        return self

    @field_validator("launch_lease_s")
    @classmethod
    def _lease_outlasts_a_request(cls, lease: float) -> float:
        # A lease that can run out while its start request is still on the wire lets a
        # second worker take over and, on Cordage, start the run again.
        if lease <= PROVIDER_REQUEST_MAX_S:
            raise ValueError(f"must be more than {PROVIDER_REQUEST_MAX_S:g} s, the longest "
                             "a provider request may take")
        return lease




class ScheduleSettings(_Section):
    """One ``[[schedules]]`` entry: synced into the database at start-up."""

    name: str = Field(min_length=1)
    cron: str | None = None
    every: str | None = None
    timezone: str = "UTC"
    job: dict[str, Any]
    labels: dict[str, str] = {}
    paused: bool = False
    overlap: Overlap = "skip"
    catchup: Catchup = "latest"
    catchup_window_s: float = Field(86400.0, gt=0, le=MAX_CATCHUP_WINDOW_S)

    @model_validator(mode="after")
    def _valid(self) -> ScheduleSettings:
        check_definition(self.spec())
        return self

    def spec(self) -> ScheduleSpec:
        return ScheduleSpec(**self.model_dump())


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    providers: dict[str, ProviderSettings] = {}
    callbacks: CallbackSettings = CallbackSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    jobs: JobSettings = JobSettings()
    schedules: list[ScheduleSettings] = []
    # Where the settings came from, for messages ("orchestrator.toml", or "defaults").
    source: str = "defaults"

    @model_validator(mode="after")
    def _schedules_name_providers(self) -> Settings:
        names = [s.name for s in self.schedules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"schedules: the name(s) {', '.join(twice)} appear more than once")
        for schedule in self.schedules:
            provider = str(schedule.job["workflow"]).partition("/")[0]
            if provider not in self.providers:
                raise ValueError(
                    f"schedules: '{schedule.name}' runs workflow '{schedule.job['workflow']}', "
                    f"whose provider '{provider}' is not configured (configured providers: "
                    f"{', '.join(self.providers) or 'none'})")
            if schedule.job.get("callback_url") and self.callbacks.signing_secret is None:
                raise ValueError(
                    f"schedules: '{schedule.name}' has a callback_url, which needs "
                    "[callbacks].signing_secret (a whsec_ secret) to sign its callbacks")
        return self

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, providers: dict[str, ProviderSettings]) -> dict[str, ProviderSettings]:
        for name in providers:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                raise ValueError(
                    f"provider name '{name}' may hold only letters, digits, '.', '_' and '-'"
                )
        return providers


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load_settings(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, override from the environment, and validate. Raises ``ConfigError``."""
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get(CONFIG_ENV))
    file = Path(path) if path is not None else config_path(env)
    data: dict[str, Any] = {}
    if file.exists():
        data = _read_toml(file)
        data["source"] = str(file)
    elif explicit:
        raise ConfigError(f"configuration file {file} does not exist; check {CONFIG_ENV}")
    for key, section in (("ORCHESTRATOR_DATABASE_URL", "database"),
                         ("ORCHESTRATOR_REDIS_URL", "redis")):
        if env.get(key):
            data[section] = {**data.get(section, {}), "url": env[key]}
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, data.get("source", "configuration"))) from None


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read: {exc.strerror}") from None


def _explain(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for error in exc.errors(include_url=False, include_input=False):
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against PRODUCT.md's example"
        elif error["type"] == "missing":
            message = "required but missing"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)
