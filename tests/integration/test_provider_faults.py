"""Both adapters under the runtime misbehaving, over real HTTP, through real workers.

500 jobs on each wire protocol while the sandbox answers 5% of requests with 503, 3% with a
spurious 429 and retry_after, drops 2% of connections (half before the request takes effect,
half after), and cuts 2% of read answers short. Every job must end as its workflow
dictates, no remote run may start twice, and no request may arrive before a retry_after
the sandbox gave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.sandbox.settings import RateLimits, SandboxSettings
from tests.integration.conftest import Harness, running_harness

pytestmark = pytest.mark.integration

JOBS_PER_PROVIDER = 500
FAULTS = {"p_503": 0.05, "p_429": 0.03, "spurious_retry_after_s": 1, "p_drop": 0.01,
          "p_drop_after": 0.01, "p_malformed": 0.02, "seed": 11}
WRONG_KEY = "cordage_wrongkey_5f1e9a"


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    sandbox = SandboxSettings(
        api_key="sandbox-key", default_duration_s=0.3, **FAULTS,  # type: ignore[arg-type]
        rate_limits=RateLimits(cordage_trigger=None, cordage_read=None, cordage_kill=None))
    wrong = tmp_path_factory.mktemp("keys") / "wrong"
    wrong.write_text(WRONG_KEY)
    # A provider whose key the runtime refuses.
    extra = (f'\n[providers.refused]\ntype = "sandbox"\nbase_url = "{{sandbox}}"\n'
             f'api_key = "file:{wrong}"\nprotocol = "cordage"\n')
    with running_harness(Path(tmp_path_factory.mktemp("faulty")), sandbox=sandbox,
                         concurrency=6, reconcile_settle_s=2.0,
                         extra_config=extra) as harness:
        yield harness


@pytest.mark.timeout(480)
def test_every_job_ends_right_with_no_duplicate_and_no_early_request(faulty: Harness) -> None:
    h = faulty
    expected: dict[str, str] = {}
    for provider in ("sandbox", "sandbox-codewords"):
        for i in range(JOBS_PER_PROVIDER):
            workflow = "fail" if i % 10 == 0 else "echo"
            tag = f"{provider}-{i}"
            job = h.client.submit(f"{provider}/{workflow}", {"tag": tag})
            expected[job["id"]] = "failed" if workflow == "fail" else "completed"
    ids = list(expected)
    h.wait_until(lambda: h.all_terminal(ids), 400, "every job to end")

    wrong = Counter()
    wrong_ids: list[str] = []
    for job_id, want in expected.items():
        job = h.store.get_job(job_id)
        assert job is not None
        if job.status.value != want:
            wrong[(job.provider, job.status.value, job.error_code)] += 1
            wrong_ids.append(job_id)
    runs = Counter(run["inputs"].get("tag") for run in h.runs()
                   if isinstance(run.get("inputs"), dict))
    doubled = {tag: n for tag, n in runs.items() if n > 1}
    stats = h.stack.sandbox.stats()
    print(f"\ninjected: {stats['injected']}, 429s: {stats['responses_429']}, "
          f"runs: {stats['runs_started']}, duplicate starts recognised by reservation: "
          f"{stats['duplicate_starts']}, early: {stats['early_requests']}")
    assert not wrong, (f"jobs that ended in the wrong state: {dict(wrong)}\n"
                       + _job_histories(h, wrong_ids[:3]))
    assert not doubled, f"remote runs started twice: {doubled}\n" + _histories(h, doubled)
    assert stats["early_requests"] == 0, stats["early_by_bucket"]
    assert stats["injected"]["drop_after"] > 0 and stats["responses_429"] > 0


def test_a_refused_key_fails_the_job_clearly_and_never_shows_the_key(faulty: Harness) -> None:
    job = faulty.client.submit("refused/echo", {"tag": "refused"})
    done = faulty.client.wait(job["id"], timeout_s=60)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "provider_auth"
    assert "provider 'refused' refused the API key" in done["error"]["message"]
    for log in (faulty.stack.workdir / "logs").glob("*.log"):
        assert WRONG_KEY not in log.read_text(errors="replace"), log.name
    assert WRONG_KEY not in str(done)


def _histories(h: Harness, tags: dict[str, int]) -> str:
    """Each doubled job's history and remote runs, to see how it happened."""
    lines = []
    for tag in tags:
        runs = [r for r in h.runs() if isinstance(r.get("inputs"), dict)
                and r["inputs"].get("tag") == tag]
        lines.append(f"{tag}: runs {[(r['run_id'], r['created_at']) for r in runs]}")
        lines.append(_job_histories(h, [str(runs[0].get("correlation_id"))]))
    return "\n".join(lines)


def _job_histories(h: Harness, job_ids: list[str]) -> str:
    lines = []
    for job_id in job_ids:
        lines.append(f"job {job_id}:")
        for event in h.store.job_events(job_id):
            lines.append(f"   {event['at']:.3f} {event['event']} {event['status']} "
                         f"{event['detail'] or ''}")
    return "\n".join(lines)
