"""The sandbox's knobs: one pydantic model, changeable at runtime through ``PUT settings``.

Rate limits are written, and parsed, the way ``orchestrator.toml`` writes them
(``"60/minute"``, ``"10/6s"``) so a test can give the sandbox exactly the limit it gives the
orchestrator.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.domain.ratelimit import parse_rate_limit


class RateLimits(BaseModel):
    """One limit per operation class ("bucket"); ``None`` means unlimited.

    Cordage's defaults are its documented per-key limits; CodeWords publishes none.
    """

    model_config = ConfigDict(extra="forbid")

    cordage_trigger: str | None = "60/minute"
    cordage_read: str | None = "120/minute"  # get run and list runs
    cordage_kill: str | None = "30/minute"
    codewords_provision: str | None = None
    codewords_start: str | None = None  # run_async and run
    codewords_read: str | None = None  # result, request and logs
    codewords_file: str | None = None

    @field_validator("*")
    @classmethod
    def _valid_rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate_limit(value)
        return value


Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class SandboxSettings(BaseModel):
    """Everything about the sandbox that a test or the demo may want to change."""

    model_config = ConfigDict(extra="forbid")

    api_key: str = "sandbox-key"
    default_duration_s: float = Field(default=0.2, ge=0.0)
    # How long a new run says ``pending`` before ``running`` (0: never pending).
    pending_s: float = Field(default=0.0, ge=0.0)
    # Added to every protocol request before it is handled.
    latency_s: float = Field(default=0.0, ge=0.0)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    # Fault injection on protocol routes, each decided per request with the seeded RNG.
    p_503: Probability = 0.0
    p_429: Probability = 0.0  # a spurious 429 although the limit is not reached
    spurious_retry_after_s: float = Field(default=1.0, ge=0.0)
    # A request that reaches us this soon after a 429 was sent was already on its way (its
    # sender could not have read the 429 yet): it is not counted as early. Loopback answers
    # arrive in well under a millisecond, so 50 ms hides no real disregard of a retry_after.
    in_flight_allowance_s: float = Field(default=0.05, ge=0.0)
    p_drop: Probability = 0.0  # connection closed before the request has any effect
    p_drop_after: Probability = 0.0  # the request takes effect, then the answer is lost
    p_malformed: Probability = 0.0  # GET answers cut in half (invalid JSON)
    seed: int | None = None
    # The longest a CodeWords ``/result`` long poll waits, whatever ``timeout`` asks.
    max_result_wait_s: float = Field(default=110.0, ge=0.0)
    # Root URL put in file links; None: the URL the request came in on.
    public_url: str | None = None

    def merged(self, changes: dict[str, object]) -> SandboxSettings:
        """A copy with ``changes`` applied; nested ``rate_limits`` are merged, not replaced,
        so ``{"rate_limits": {"cordage_read": "1/minute"}}`` keeps the other limits."""
        data = self.model_dump()
        for key, value in changes.items():
            if key == "rate_limits" and isinstance(value, dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return SandboxSettings.model_validate(data)
