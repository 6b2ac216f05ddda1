"""Builds one adapter per configured provider, on first use, sharing the process's client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from orchestrator.adapters.providers.codewords import CodeWordsProvider
from orchestrator.adapters.providers.cordage import CordageProvider
from orchestrator.config import ProviderSettings
from orchestrator.metrics import Metrics
from orchestrator.ports import Embargoes, Provider, RateLimiter

# The sandbox serves each protocol under its own path on one server.
SANDBOX_PATHS = {"cordage": "/cordage", "codewords": "/codewords"}


def build_provider(name: str, settings: ProviderSettings, client: httpx.Client,
                   embargoes: Embargoes | None = None, metrics: Metrics | None = None,
                   limiter: RateLimiter | None = None) -> Provider:
    base_url = settings.base_url
    if settings.type == "sandbox":
        base_url += SANDBOX_PATHS[settings.protocol]
    key = settings.api_key.reveal()
    limits = settings.rate_limits
    shared: dict[str, Any] = {
        "embargoes": embargoes, "metrics": metrics, "limiter": limiter,
        "limits": {"trigger": limits.trigger, "read": limits.read, "cancel": limits.cancel}}
    if settings.protocol_type == "codewords":
        return CodeWordsProvider(name, base_url, key, client,
                                 result_wait_s=settings.result_wait_s, **shared)
    return CordageProvider(name, base_url, key, client, kill_path=settings.kill_path, **shared)


class ConfiguredProviders:
    def __init__(self, settings: Mapping[str, ProviderSettings], client: httpx.Client,
                 embargoes: Embargoes | None = None, metrics: Metrics | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self._settings = dict(settings)
        self._client = client
        self._embargoes = embargoes
        self._metrics = metrics
        self._limiter = limiter
        self._built: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        if name not in self._built:
            self._built[name] = build_provider(name, self._settings[name], self._client,
                                               self._embargoes, self._metrics, self._limiter)
        return self._built[name]

    def names(self) -> list[str]:
        return list(self._settings)

    def close(self) -> None:
        for provider in self._built.values():
            provider.close()
