"""``/metrics`` and the logs after a real run: a hundred jobs through the API, a worker and
the sandbox over HTTP, with callbacks. The scrape must agree with the database, and the logs
(JSON lines here) must hold one structured line per state change and no secret."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.devstack import SANDBOX_KEY
from orchestrator.domain.job import JobStatus
from tests.integration.conftest import Harness, running_harness

pytestmark = pytest.mark.integration

MIX = {"sandbox/echo": 130, "sandbox-codewords/echo": 120, "sandbox/fail": 50}
PROVIDER = {"sandbox/echo": "sandbox", "sandbox-codewords/echo": "sandbox-codewords",
            "sandbox/fail": "sandbox"}
STATE_FIELDS = {"job_id", "workflow", "provider", "attempt", "event", "status"}
TOKEN_SHAPE = re.compile(r"orch_[A-Za-z0-9_-]{20,}")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One stack logging JSON, a hundred jobs run to the end and their callbacks received,
    then the scrape and the database's own counts. The stack is stopped (every process
    has written its last line) before the tests read its logs."""
    workdir = tmp_path_factory.mktemp("metrics")
    with running_harness(workdir, concurrency=4,
                         env={"ORCHESTRATOR_LOG_FORMAT": "json"}) as harness, \
            harness.receiver() as receiver:
        ids = [harness.client.submit(workflow, {"n": n}, callback_url=receiver.url)["id"]
               for workflow, count in MIX.items() for n in range(count)]
        harness.wait_until(lambda: harness.all_terminal(ids), 180, "every job to end")
        harness.wait_until(lambda: len(receiver.events()) == len(ids), 60, "every callback")
        harness.wait_until(lambda: _settled(harness), 30, "the delivery rows")
        response = httpx.get(f"{harness.stack.api_url}/metrics", timeout=10)
        store = harness.store
        database = {
            "statuses": {w: Counter(j.status.value for j in store.list_jobs(workflow=w,
                                                                            limit=1000))
                         for w in MIX},
            "total_polls": store.total_polls(), "deliveries": store.count_deliveries(),
            "events": Counter((job_id, str(e["event"]), str(e["status"]))
                              for job_id in ids for e in store.job_events(job_id))}
        secrets = [SANDBOX_KEY, harness.token, harness.secret,
                   harness.secret.removeprefix("whsec_")]
    return {"ids": ids, "response": response, "samples": _samples(response.text),
            "db": database, "secrets": secrets, "logs": workdir / "logs"}


def _settled(harness: Harness) -> bool:
    return set(harness.store.count_deliveries()) == {"succeeded"}


def _samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and wanted <= pairs)


def test_the_scrape_is_prometheus_text_without_auth(run: dict[str, Any]) -> None:
    response = run["response"]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "job_" not in response.text  # no job ids among the labels


def test_jobs_by_status_and_workflow_agree_with_the_database(run: dict[str, Any]) -> None:
    samples = run["samples"]
    for workflow in MIX:
        in_db = run["db"]["statuses"][workflow]
        for status in JobStatus:
            shown = value(samples, "orchestrator_jobs", status=status.value, workflow=workflow)
            assert shown == in_db.get(status.value, 0), (workflow, status)
    jobs = "orchestrator_jobs"
    assert value(samples, jobs, status="completed", workflow="sandbox/echo") == MIX["sandbox/echo"]
    assert value(samples, jobs, status="failed", workflow="sandbox/fail") == MIX["sandbox/fail"]
    for provider in ("sandbox", "sandbox-codewords"):
        assert value(samples, "orchestrator_in_flight", provider=provider) == 0
    for queue in ("orchestrator.jobs", "orchestrator.callbacks"):
        assert ("orchestrator_queue_depth", frozenset({("queue", queue)})) in samples


def test_launches_and_polls_agree_with_the_jobs(run: dict[str, Any]) -> None:
    samples = run["samples"]
    jobs = Counter(PROVIDER[w] for w, n in MIX.items() for _ in range(n))
    for provider, count in jobs.items():
        launches = "orchestrator_launches_total"
        assert value(samples, launches, provider=provider, outcome="started") == count
        assert total(samples, launches, provider=provider) >= count
        polls = "orchestrator_polls_total"
        assert total(samples, polls, provider=provider) >= count
        latency = value(samples, "orchestrator_poll_latency_seconds_count", provider=provider)
        assert latency >= count  # every job's last poll asked the runtime
        assert value(samples, "orchestrator_poll_latency_seconds_sum", provider=provider) > 0
    polls_total = "orchestrator_polls_total"
    assert total(samples, polls_total, outcome="completed") == (
        MIX["sandbox/echo"] + MIX["sandbox-codewords/echo"])
    assert total(samples, polls_total, outcome="failed") == MIX["sandbox/fail"]
    # Every poll that was not skipped advanced one job's poll count, exactly once.
    advanced = total(samples, polls_total) - total(samples, polls_total, outcome="skipped")
    assert advanced == run["db"]["total_polls"]


def test_deliveries_agree_with_the_deliveries_table(run: dict[str, Any]) -> None:
    samples = run["samples"]
    in_db = run["db"]["deliveries"]
    assert in_db == {"succeeded": len(run["ids"])}
    assert value(samples, "orchestrator_deliveries", status="succeeded") == len(run["ids"])
    assert value(samples, "orchestrator_deliveries", status="pending") == 0
    assert value(samples, "orchestrator_callback_deliveries_total",
                 outcome="succeeded") == len(run["ids"])
    posts = value(samples, "orchestrator_delivery_latency_seconds_count")
    assert posts >= len(run["ids"])
    assert value(samples, "orchestrator_delivery_latency_seconds_bucket", le="+Inf") == posts


def test_the_logs_hold_no_key_token_or_signing_secret(run: dict[str, Any]) -> None:
    forbidden = run["secrets"]
    files = sorted(run["logs"].glob("*.log"))
    assert {f.name for f in files} >= {"api.log", "worker1.log", "beat.log"}
    for path in files:
        text = path.read_text(errors="replace")
        for value_ in forbidden:
            assert value_ not in text, f"{path.name} shows a secret"
        assert not TOKEN_SHAPE.search(text), f"{path.name} shows a token"


def test_every_state_change_is_one_json_line_with_its_fields(run: dict[str, Any]) -> None:
    records = [_json(line) for path in sorted(run["logs"].glob("*.log"))
               for line in path.read_text(errors="replace").splitlines()]
    changes = [r for r in records if r is not None and r.get("logger") == "orchestrator.jobs"]
    for change in changes:
        assert set(change) >= STATE_FIELDS, change
        assert change["workflow"].startswith(f"{change['provider']}/")
        assert isinstance(change["attempt"], int) and change["level"] == "INFO"
    logged = Counter((c["job_id"], c["event"], c["status"]) for c in changes)
    assert logged == run["db"]["events"]  # one line per history row: none missed, none doubled
    api_lines = (run["logs"] / "api.log").read_text().splitlines()
    assert api_lines and all(_json(line) is not None for line in api_lines)


def _json(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
