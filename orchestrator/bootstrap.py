"""The composition root: builds the real adapters once per process from the settings.

Everything here is lazy, so a forked Celery child builds its own database engine and HTTP
client after the fork instead of sharing its parent's sockets.
"""

from __future__ import annotations

import os
import random
import time
from functools import cached_property
from typing import Any

import httpx
import redis

from orchestrator.adapters.artifacts import FsspecArtifactStore
from orchestrator.adapters.celery_app import CeleryScheduler, make_celery
from orchestrator.adapters.crypto import SecretBox
from orchestrator.adapters.http.callbacks import HttpCallbackSender
from orchestrator.adapters.http.client import make_http_client
from orchestrator.adapters.http.guard import NetworkGuard, RememberedChecks
from orchestrator.adapters.providers.registry import ConfiguredProviders
from orchestrator.adapters.redis.delayed import RedisDelayQueue
from orchestrator.adapters.redis.embargo import RedisEmbargoes
from orchestrator.adapters.redis.limiter import RedisRateLimiter
from orchestrator.adapters.redis.metrics import RedisMetrics
from orchestrator.adapters.redis.wake import RedisWakeFlag
from orchestrator.adapters.store.endpoints import SqlEndpointStore
from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.repository import SqlStore
from orchestrator.adapters.store.schedules import SqlScheduleStore
from orchestrator.config import Settings
from orchestrator.logs import register_settings_secrets
from orchestrator.metrics import MeasuredSender
from orchestrator.ports import Scheduler
from orchestrator.services.deps import Deps, Limits, ProviderPolicy


class SystemClock:
    def now(self) -> float:
        return time.time()


class Container:
    def __init__(self, settings: Settings, *, scheduler: Scheduler | None = None,
                 celery_app: Any = None) -> None:
        """``celery_app``: the process's own Celery app (a worker's or beat's), to send
        through instead of a producer app of our own."""
        self.settings = settings
        self._scheduler = scheduler
        self._celery_app = celery_app
        self.pid = os.getpid()
        # Whatever this process logs from now on is scrubbed of the settings' secrets.
        register_settings_secrets(settings)

    @cached_property
    def engine(self):  # type: ignore[no-untyped-def]
        return make_engine(self.settings.database.url)

    @cached_property
    def store(self) -> SqlStore:
        return SqlStore(self.engine)

    @cached_property
    def schedules(self) -> SqlScheduleStore:
        return SqlScheduleStore(self.engine)

    @cached_property
    def url_guard(self) -> NetworkGuard:
        """The SSRF guard (``[callbacks]``): every send connects to the address it checked."""
        return NetworkGuard.from_settings(self.settings.callbacks)

    @cached_property
    def endpoints(self) -> SqlEndpointStore | None:
        """None without ``[callbacks].signing_secret``: its key seals the endpoints'
        secrets at rest, so without it no endpoint can be registered."""
        secret = self.settings.callbacks.signing_secret
        return SqlEndpointStore(self.engine, SecretBox([secret.reveal()])) if secret else None

    @cached_property
    def http(self) -> httpx.Client:
        return make_http_client()

    @cached_property
    def artifacts(self) -> FsspecArtifactStore:
        """Where output files are kept (``[artifacts] url``), fetched with the shared client
        through the SSRF guard of ``[callbacks]``: the URLs come from the user's workflow."""
        return FsspecArtifactStore(self.settings.artifacts.url, self.http,
                                   guard=self.url_guard)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis.url, socket_timeout=5,
                                    socket_connect_timeout=5, health_check_interval=30)

    @cached_property
    def embargoes(self) -> RedisEmbargoes:
        return RedisEmbargoes(self.redis)

    @cached_property
    def metrics(self) -> RedisMetrics:
        """Counters and histograms shared by every process (read back by ``/metrics``)."""
        return RedisMetrics.from_url(self.settings.redis.url)

    @cached_property
    def providers(self) -> ConfiguredProviders:
        return ConfiguredProviders(self.settings.providers, self.http, self.embargoes,
                                   metrics=self.metrics, limiter=self.limiter)

    @cached_property
    def limiter(self) -> RedisRateLimiter:
        """Our own limits on each runtime (``rate_limits``), shared by every process."""
        return RedisRateLimiter(self.redis)

    @cached_property
    def celery(self):  # type: ignore[no-untyped-def]
        return self._celery_app or make_celery(self.settings, name="orchestrator-producer")

    @cached_property
    def scheduler(self) -> Scheduler:
        return self._scheduler or self.celery_scheduler

    @cached_property
    def celery_scheduler(self) -> CeleryScheduler:
        """Steps due now go to the broker; later ones wait in Redis' delay queue."""
        return CeleryScheduler(self.celery, RedisDelayQueue(self.redis),
                               RedisWakeFlag(self.redis))

    @cached_property
    def deps(self) -> Deps:
        settings = self.settings
        secret = settings.callbacks.signing_secret
        return Deps(
            store=self.store,
            schedules=self.schedules,
            endpoints=self.endpoints,
            providers=self.providers,
            scheduler=self.scheduler,
            clock=SystemClock(),
            sender=MeasuredSender(HttpCallbackSender(self.http, settings.callbacks.timeout_s,
                                                     self.url_guard), self.metrics),
            url_guard=RememberedChecks(self.url_guard),
            policies={name: ProviderPolicy(p.poll.policy(), p.run_timeout_s,
                                           max_in_flight=p.max_in_flight,
                                           trigger_limit=p.rate_limits.trigger)
                      for name, p in settings.providers.items()},
            limits=Limits(
                max_input_bytes=settings.jobs.max_input_bytes,
                launch_lease_s=settings.jobs.launch_lease_s,
                sweep_grace_s=settings.jobs.sweep_grace_s,
                reconcile_settle_s=settings.jobs.reconcile_settle_s,
                reconcile_window_s=settings.jobs.reconcile_window_s,
                callback_retry_s=tuple(settings.callbacks.retry_schedule_s),
                endpoint_disable_after_s=settings.callbacks.disable_after_s,
                delivery_lease_s=settings.callbacks.timeout_s * 3 + 30),
            signing_secrets=(secret.reveal(),) if secret else (),
            rng=random.Random(),
            artifacts=self.artifacts,
        )

    def close(self) -> None:
        if "http" in self.__dict__:
            self.http.close()
        if "providers" in self.__dict__:
            self.providers.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "redis" in self.__dict__:
            self.redis.close()
        if "metrics" in self.__dict__:
            self.metrics.close()
