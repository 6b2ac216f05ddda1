"""A retry_after holds for the API key and operation: nothing is sent before it passes."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.adapters.providers.codewords import CodeWordsProvider
from orchestrator.adapters.providers.cordage import CordageProvider
from orchestrator.domain.errors import RateLimited, Transient
from orchestrator.domain.job import LaunchRequest
from orchestrator.sandbox import SandboxServer
from orchestrator.testing import InMemoryEmbargoes


def test_a_429_embargoes_that_operation_for_every_adapter_on_the_key(
        sandbox: SandboxServer, http_client: httpx.Client) -> None:
    sandbox.configure(rate_limits={"cordage_trigger": "2/minute"})
    shared = InMemoryEmbargoes()
    # Two adapters on one key: as two worker processes would hold them.
    first, second = (CordageProvider(n, sandbox.cordage_url, "sandbox-key", http_client,
                                     embargoes=shared) for n in ("a", "b"))
    launch = LaunchRequest("job-1", "echo", {})
    first.start(launch)
    first.start(launch)
    with pytest.raises(RateLimited) as refused:
        first.start(launch)  # the sandbox's 429
    assert refused.value.retry_after and refused.value.retry_after > 0
    sent = sandbox.stats()["requests"]["cordage.trigger"]
    with pytest.raises(RateLimited, match="not sent"):
        second.start(launch)
    assert sandbox.stats()["requests"]["cordage.trigger"] == sent
    assert sandbox.stats()["early_requests"] == 0
    # Reads are another operation: they still go out.
    run_id = first.recent_runs("echo").runs[0].run_id
    assert second.poll("echo", run_id).state.value in ("pending", "running", "completed")


def test_a_503_with_retry_after_embargoes_too(sandbox: SandboxServer,
                                              http_client: httpx.Client) -> None:
    sandbox.configure(p_503=1.0)
    shared = InMemoryEmbargoes()
    provider = CodeWordsProvider("cw", sandbox.codewords_url, "sandbox-key", http_client,
                                 embargoes=shared)
    with pytest.raises(Transient):
        provider.reserve("echo")
    # The sandbox's 503 names no wait: nothing is embargoed.
    assert shared.until(provider.key_id, "trigger") is None


def test_the_key_id_does_not_reveal_the_key(http_client: httpx.Client) -> None:
    provider = CordageProvider("c", "https://example.invalid", "cordage_secret123", http_client)
    assert "secret" not in provider.key_id and len(provider.key_id) == 16
    assert "cordage_secret123" not in repr(provider)
