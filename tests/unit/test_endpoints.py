"""Callback endpoints: fan-out by subscription and filter, signatures with each endpoint's
secrets (both while one rotates), batch.completed once, disabling, and replay."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from orchestrator.domain.records import CallbackEndpoint, NewDelivery
from orchestrator.ports import SendResult
from orchestrator.services.batches import BatchSpec, submit_batch
from orchestrator.services.callbacks import deliver_callback
from orchestrator.services.deps import Deps
from orchestrator.services.endpoints import (
    EndpointRefused,
    EndpointSpec,
    create_endpoint,
    replay_delivery,
    replay_failed,
    rotate_secret,
    update_endpoint,
)
from orchestrator.services.fanout import complete_batch
from orchestrator.services.submit import JobSpec, submit_job
from orchestrator.testing import FakeClock, FakeSender, drain, make_deps

URL = "https://hooks.example.com/a"


def now_deps(**overrides: object) -> Deps:
    """Fakes on a clock at the real time: the reference library checks the timestamp."""
    return make_deps(clock=FakeClock(time.time()), **overrides)


def endpoint(deps: Deps, **spec: object) -> CallbackEndpoint:
    return create_endpoint(EndpointSpec(**{"url": URL, **spec}), deps)  # type: ignore[arg-type]


def submit(deps: Deps, **spec: object) -> str:
    fields: dict[str, object] = {"workflow": "fake/echo", "inputs": {"n": 1}, **spec}
    return submit_job(JobSpec(**fields), deps).job.id  # type: ignore[arg-type]


def sent_to(deps: Deps, url: str = URL) -> list[tuple[dict[str, str], dict[str, object]]]:
    assert isinstance(deps.sender, FakeSender)
    return [(headers, json.loads(body)) for u, headers, body in deps.sender.sent if u == url]


def test_an_endpoint_gets_the_events_it_subscribes_to_signed_with_its_own_secret() -> None:
    deps = now_deps()
    ep = endpoint(deps, event_types=["job.started", "job.completed"])
    assert ep.secret.startswith("whsec_")
    job_id = submit(deps)
    drain(deps)
    events = sent_to(deps)
    assert [body["type"] for _, body in events] == ["job.started", "job.completed"]
    assert all(body["data"]["id"] == job_id for _, body in events)  # type: ignore[index]
    for _, headers, body in deps.sender.sent:  # type: ignore[union-attr]
        Webhook(ep.secret).verify(body, headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(deps.signing_secrets[0]).verify(body, headers)


def test_filters_by_workflow_and_labels_narrow_what_an_endpoint_gets() -> None:
    deps = now_deps()
    endpoint(deps, workflows=["fake/echo"], labels={"team": "data"})
    submit(deps, labels={"team": "data"})
    submit(deps, labels={"team": "web"})
    submit(deps, workflow="fake/other", labels={"team": "data"})
    drain(deps)
    got = sent_to(deps)
    assert len(got) == 1
    assert got[0][1]["data"]["labels"] == {"team": "data"}  # type: ignore[index]


def test_the_default_subscription_is_the_terminal_events_and_batch_completed() -> None:
    deps = now_deps()
    ep = endpoint(deps)
    assert "job.started" not in ep.event_types
    assert set(ep.event_types) == {"job.completed", "job.failed", "job.cancelled",
                                   "job.timed_out", "batch.completed"}


def test_a_batch_ends_with_one_batch_completed_carrying_its_counts() -> None:
    deps = now_deps()
    endpoint(deps, event_types=["batch.completed"])
    done = submit_batch(BatchSpec([{"workflow": "fake/echo", "inputs": {"n": i}}
                                   for i in range(3)], callback_url="https://b.example.com/"),
                        deps)
    drain(deps)
    for url in (URL, "https://b.example.com/"):
        events = sent_to(deps, url)
        batch_events = [b for _, b in events if b["type"] == "batch.completed"]
        assert len(batch_events) == 1, url
        data = batch_events[0]["data"]
        assert data["id"] == done.batch.id and data["done"] is True  # type: ignore[index]
        assert data["counts"]["completed"] == 3  # type: ignore[index]
    # Whoever else tries afterwards (the sweep, a duplicate message) emits nothing.
    assert complete_batch(done.batch.id, deps) is False
    assert deps.store.ended_batches(10) == []


def test_during_a_rotation_both_secrets_sign_then_only_the_new_one() -> None:
    deps = now_deps()
    old = endpoint(deps)
    new = rotate_secret(old.id, deps)
    assert new.secret != old.secret and new.previous_until is not None
    submit(deps)
    drain(deps)
    headers, _ = sent_to(deps)[0]
    body = deps.sender.sent[0][2]  # type: ignore[union-attr]
    assert len(headers["webhook-signature"].split()) == 2
    Webhook(old.secret).verify(body, headers)
    Webhook(new.secret).verify(body, headers)
    assert isinstance(deps.clock, FakeClock)
    deps.clock.advance(deps.limits.secret_overlap_s + 1)
    submit(deps)
    drain(deps)
    headers, _ = sent_to(deps)[1]
    assert len(headers["webhook-signature"].split()) == 1


def test_410_disables_the_endpoint_and_its_deliveries_then_fail_without_a_request() -> None:
    deps = now_deps(sender=FakeSender(lambda n: SendResult(410, 0.01, error="gone")))
    ep = endpoint(deps)
    submit(deps)
    drain(deps)
    current = deps.endpoints.get_endpoint(ep.id)  # type: ignore[union-attr]
    assert current is not None and not current.enabled
    assert "410" in (current.disabled_reason or "")
    # No new deliveries to a disabled endpoint; one pending already ends failed unsent,
    # and a replay is refused until it is enabled again.
    submit(deps)
    [delivery] = deps.store.list_deliveries(endpoint_id=ep.id)
    with pytest.raises(EndpointRefused) as refused:
        replay_delivery(delivery.id, deps)
    assert refused.value.status == 409 and "enable it first" in refused.value.message
    now = deps.clock.now()
    deps.store.add_deliveries([NewDelivery("msg_2", None, "job.completed", URL, ep.id,
                                           b"{}", now)], now)
    assert deliver_callback("msg_2", deps).result == "failed"
    assert len(deps.sender.sent) == 1  # type: ignore[union-attr]
    failed = deps.store.get_delivery("msg_2")
    assert failed is not None and "disabled" in (failed.last_error or "")


def test_an_endpoint_failing_for_days_is_disabled_and_a_success_clears_the_streak() -> None:
    answers = {"code": 500}
    deps = now_deps(sender=FakeSender(lambda n: SendResult(answers["code"], 0.01)))
    ep = endpoint(deps)
    submit(deps)
    drain(deps)  # every retry fails: about three days
    current = deps.endpoints.get_endpoint(ep.id)  # type: ignore[union-attr]
    assert current is not None and current.enabled and current.failing_since is not None
    assert isinstance(deps.clock, FakeClock)
    deps.clock.advance(3 * 86_400)
    submit(deps)
    drain(deps)
    current = deps.endpoints.get_endpoint(ep.id)  # type: ignore[union-attr]
    assert current is not None and not current.enabled
    assert "days" in (current.disabled_reason or "")
    # Re-enabled and answering again: the replayed deliveries succeed, the streak clears.
    answers["code"] = 200
    update_endpoint(ep.id, {"enabled": True}, deps)
    replayed = replay_failed(ep.id, 0.0, deps)
    assert len(replayed) == 2
    drain(deps)
    current = deps.endpoints.get_endpoint(ep.id)  # type: ignore[union-attr]
    assert current is not None and current.enabled and current.failing_since is None
    assert deps.store.list_deliveries(endpoint_id=ep.id, status="failed") == []


def test_a_replay_sends_the_same_webhook_id_and_body_and_keeps_the_log() -> None:
    deps = now_deps()
    ep = endpoint(deps)
    submit(deps)
    drain(deps)
    [delivery] = deps.store.list_deliveries(endpoint_id=ep.id)
    assert delivery.status == "succeeded"
    replay_delivery(delivery.id, deps)
    drain(deps)
    first, second = deps.sender.sent  # type: ignore[union-attr]
    assert first[1]["webhook-id"] == second[1]["webhook-id"] == delivery.id
    assert first[2] == second[2]
    assert [a["number"] for a in deps.store.delivery_attempts(delivery.id)] == [1, 2]


@pytest.mark.parametrize(("spec", "words"), [
    ({"event_types": ["job.exploded"]}, "unknown event type"),
    ({"event_types": []}, "event_types is empty"),
    ({"workflows": ["nowhere/echo"]}, "configured provider"),
    ({"url": "ftp://example.com/"}, "http:// or https://"),
])
def test_bad_endpoints_are_refused_with_what_is_wrong(spec: dict[str, object],
                                                      words: str) -> None:
    deps = now_deps()
    with pytest.raises(EndpointRefused) as refused:
        endpoint(deps, **spec)
    assert refused.value.status == 422 and words in refused.value.message
    assert deps.endpoints.list_endpoints() == []  # type: ignore[union-attr]


def test_the_ssrf_guard_refuses_at_registration() -> None:
    class Guard:
        def check(self, url: str) -> None:
            raise ValueError(f"callback URL '{url}' resolves to 10.0.0.1, a private address")

    deps = now_deps(url_guard=Guard())
    with pytest.raises(EndpointRefused) as refused:
        endpoint(deps, url="http://10.0.0.1/")
    assert refused.value.status == 422 and "private address" in refused.value.message


def test_an_early_duplicate_message_never_sends_before_the_receivers_retry_after() -> None:
    deps = now_deps(sender=FakeSender(lambda n: SendResult(503, 0.2, retry_after=30.0)))
    ep = endpoint(deps)
    now = deps.clock.now()
    deps.store.add_deliveries([NewDelivery("msg_1", None, "job.completed", URL, ep.id, b"{}",
                                           now)], now)
    assert deliver_callback("msg_1", deps).result == "retrying"
    delivery = deps.store.get_delivery("msg_1")
    assert delivery is not None and delivery.next_attempt_at is not None
    assert delivery.next_attempt_at >= now + 0.2 + 30.0  # counted from the answer
    assert isinstance(deps.clock, FakeClock)
    deps.clock.advance(29.5)  # a duplicate message arrives early
    assert deliver_callback("msg_1", deps).result == "skipped"
    assert len(deps.sender.sent) == 1  # type: ignore[union-attr]


def test_a_round_sends_every_due_delivery_at_once_and_records_them_together() -> None:
    from orchestrator.services.callbacks import deliver_due

    deps = now_deps()
    ep = endpoint(deps)
    now = deps.clock.now()
    deps.store.add_deliveries(
        [NewDelivery(f"msg_{n}", None, "job.completed", URL, ep.id, b"{}", now)
         for n in range(5)]
        + [NewDelivery("msg_own", None, "job.completed", "https://own.example.com/", None,
                       b"{}", now)], now)
    outcomes = deliver_due(deps, most=4)
    assert [o.result for o in outcomes] == ["succeeded"] * 4
    assert len(deliver_due(deps)) == 2 and deliver_due(deps) == []
    assert len(deps.sender.sent) == 6  # type: ignore[union-attr]
    own = [h for u, h, _ in deps.sender.sent if u == "https://own.example.com/"]  # type: ignore[union-attr]
    Webhook(deps.signing_secrets[0]).verify(b"{}", own[0])


def test_a_round_that_cannot_record_lets_go_of_its_claims_at_once() -> None:
    from orchestrator.services.callbacks import deliver_due
    from orchestrator.testing import InMemoryStore

    class Broken(InMemoryStore):
        def record_delivery_attempts(self, records):  # type: ignore[no-untyped-def]
            raise ConnectionError("database is locked")

    deps = now_deps(store=Broken())
    ep = endpoint(deps)
    now = deps.clock.now()
    deps.store.add_deliveries([NewDelivery("msg_1", None, "job.completed", URL, ep.id,
                                           b"{}", now)], now)
    with pytest.raises(ConnectionError):
        deliver_due(deps)
    held = deps.store.get_delivery("msg_1")
    assert held is not None and held.claimed_until is None and held.status == "pending"
