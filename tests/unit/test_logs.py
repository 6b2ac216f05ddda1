"""Logs: JSON lines or text, one structured line per state change, secrets never shown."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import logs
from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.migrate import upgrade
from orchestrator.adapters.store.repository import SqlStore
from orchestrator.config import Settings
from orchestrator.domain.job import Event
from orchestrator.domain.records import JobChange, NewJob
from orchestrator.domain.webhook import new_secret
from orchestrator.logs import REDACTED, RedactingFilter, configure_logging

KEY = "cw-live-9f8e7d6c5b4a"
TOKEN = "orch_" + "A1b2C3d4" * 5 + "xyz"


@pytest.fixture(autouse=True)
def isolated_logging() -> Iterator[None]:
    """Root logger and registered secrets as they were, after each test."""
    root = logging.getLogger()
    handlers, level, secrets = list(root.handlers), root.level, set(logs._secrets)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logs._secrets.clear()
    logs._secrets.update(secrets)


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"refused {KEY}")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, args or None, exc_info)


class Echo:
    def __str__(self) -> str:
        return f"<request with Authorization: {KEY}>"


def test_the_filter_scrubs_a_key_from_the_message_and_the_args() -> None:
    logs.register_secrets([KEY])
    item = record(f"sent {KEY} to %s, then %s and %s (try %d)", f"x{KEY}y", Echo(), KEY, 3)
    assert RedactingFilter().filter(item)
    message = item.getMessage()
    assert KEY not in message and message.count(REDACTED) == 4
    assert message.endswith("(try 3)")  # numbers stay numbers for %d


def test_the_filter_scrubs_mapping_args_extras_and_tracebacks() -> None:
    logs.register_secrets([KEY])
    item = record("%(who)s", exc=True)
    item.args = {"who": KEY}
    item.__dict__["detail"] = f"body said {KEY}"
    RedactingFilter().filter(item)
    assert item.getMessage() == REDACTED and item.__dict__["detail"] == f"body said {REDACTED}"
    assert item.exc_text is not None and "RuntimeError" in item.exc_text
    assert KEY not in item.exc_text and REDACTED in item.exc_text


def test_tokens_are_redacted_by_shape_but_their_listed_prefix_is_not() -> None:
    item = record("token %s, listed as %s…", TOKEN, TOKEN[:12])
    RedactingFilter().filter(item)
    assert item.getMessage() == f"token {REDACTED}, listed as {TOKEN[:12]}…"


def test_short_values_are_not_registered_so_words_survive() -> None:
    logs.register_secrets(["k", "", None, "abc"])
    assert logs.redact("a key and a cab") == "a key and a cab"


def test_settings_register_keys_the_signing_secret_and_url_passwords() -> None:
    secret = new_secret()
    settings = Settings.model_validate({
        "database": {"url": "postgresql+psycopg://orch:db-pass-123@db/orch"},
        "providers": {"cw": {"type": "codewords", "base_url": "http://x", "api_key": KEY}},
        "callbacks": {"signing_secret": secret}})
    logs.register_settings_secrets(settings)
    text = logs.redact(f"{KEY} {secret} {secret.removeprefix('whsec_')} db-pass-123")
    assert text == " ".join([REDACTED] * 4)


def test_json_lines_parse_with_their_fields_and_no_secret(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.register_secrets([KEY])
    configure_logging("json")
    log = logging.getLogger("orchestrator.test")
    log.info("calling with %s", KEY, extra={"job_id": "job_1", "attempt": 2})
    log.warning("plain")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == f"calling with {REDACTED}" and first["level"] == "INFO"
    assert first["logger"] == "orchestrator.test" and first["job_id"] == "job_1"
    assert first["attempt"] == 2 and "time" in first and "process" in first
    assert second["level"] == "WARNING"
    assert KEY not in "".join(lines)


def test_text_is_chosen_by_the_environment(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.LOG_FORMAT_ENV, "text")
    configure_logging()
    configure_logging()  # configuring again replaces our handler, never doubles it
    logging.getLogger("orchestrator.test").info("hello %s", TOKEN)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(f"INFO    orchestrator.test: hello {REDACTED}")
    assert not line.startswith("{")


def test_an_unknown_format_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.LOG_FORMAT_ENV, "xml")
    with pytest.raises(ValueError, match="ORCHESTRATOR_LOG_FORMAT='xml'.*json or text"):
        configure_logging()


def test_each_state_change_is_one_structured_record(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/logs.db")
    upgrade(engine)
    store = SqlStore(engine)
    caplog.set_level(logging.INFO, logger="orchestrator.jobs")
    store.add_job(NewJob("job_1", "sandbox/echo", "sandbox", {}), 1.0)
    store.move(JobChange("job_1", Event.CLAIM), 2.0)
    store.move(JobChange("job_1", Event.CLAIM), 3.0)  # not moved: nothing logged
    engine.dispose()
    changes = [r for r in caplog.records if r.name == "orchestrator.jobs"]
    assert [(r.__dict__["event"], r.__dict__["status"]) for r in changes] == [
        ("submit", "queued"), ("claim", "starting")]
    fields = {k: changes[1].__dict__[k] for k in
              ("job_id", "workflow", "provider", "attempt")}
    assert fields == {"job_id": "job_1", "workflow": "sandbox/echo", "provider": "sandbox",
                      "attempt": 1}
    assert changes[1].getMessage() == "job job_1 claim: now starting (sandbox/echo, attempt 1)"
