"""What the use cases need, bundled once per process by the composition root."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.domain.backoff import BackoffPolicy
from orchestrator.domain.events import CALLBACK_RETRY_S
from orchestrator.domain.ratelimit import RateLimit
from orchestrator.ports import (
    ArtifactStore,
    CallbackSender,
    Clock,
    EndpointStore,
    JobStore,
    ProviderRegistry,
    Scheduler,
    ScheduleStore,
    UrlGuard,
)

# A message that arrives this much before its step is due is an early duplicate (the step
# was rescheduled later after it was sent): it is dropped, and the later one does the work.
EARLY_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class ProviderPolicy:
    """How we treat one provider: its poll backoff, its default run time-out, and how its
    launches are paced (at most ``max_in_flight`` runs at once; ``trigger_limit``)."""

    backoff: BackoffPolicy = BackoffPolicy()
    run_timeout_s: float = 1800.0
    max_in_flight: int | None = None
    trigger_limit: RateLimit | None = None

    @property
    def paced(self) -> bool:
        """Launches wait for the dispatcher, which hands them out as slots and turns free,
        by priority and in fair shares; an unpaced provider's launch is sent at once."""
        return self.max_in_flight is not None or self.trigger_limit is not None


@dataclass(frozen=True)
class Limits:
    max_input_bytes: int = 1_048_576
    launch_lease_s: float = 120.0
    # A job whose start keeps being refused (5xx, connection refused) fails after this many.
    max_launch_tries: int = 30
    # Reconciling a lost launch: a start not listed after settle_s never took effect; after
    # window_s of looking, the job fails rather than risk a duplicate.
    reconcile_settle_s: float = 10.0
    reconcile_window_s: float = 120.0
    # The longest one provider request may take (the shared client's time-outs).
    request_max_s: float = 30.0
    sweep_grace_s: float = 30.0
    # Delays before each retry of a callback; its length + 1 is the number of attempts.
    callback_retry_s: Sequence[float] = CALLBACK_RETRY_S
    callback_jitter: float = 0.2
    # How long a sender holds the deliveries it claimed: past every address's time-out
    # (callbacks.timeout_s each), so a live sender never loses one; a dead one's come back.
    delivery_lease_s: float = 60.0
    # An endpoint whose every attempt failed for this long is disabled (Svix: 5 days).
    endpoint_disable_after_s: float = 5 * 86_400
    # After a secret rotation the previous secret signs too, for this long.
    secret_overlap_s: float = 86_400


@dataclass
class Deps:
    store: JobStore
    providers: ProviderRegistry
    scheduler: Scheduler
    clock: Clock
    sender: CallbackSender | None = None
    policies: Mapping[str, ProviderPolicy] = field(default_factory=dict)
    limits: Limits = Limits()
    # Secrets that sign callbacks to a job's own callback_url (several while rotating).
    signing_secrets: Sequence[str] = field(default=(), repr=False)
    rng: random.Random = field(default_factory=random.Random)
    schedules: ScheduleStore | None = None
    endpoints: EndpointStore | None = None
    url_guard: UrlGuard | None = None
    artifacts: ArtifactStore | None = None

    def policy(self, provider: str) -> ProviderPolicy:
        return self.policies.get(provider, ProviderPolicy())
