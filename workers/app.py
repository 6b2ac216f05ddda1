"""The Celery app, configured from ``orchestrator.toml`` (or ``$ORCHESTRATOR_CONFIG``).

A configuration error stops the process here, at start, with the message that names the key.
Logging is ours, not Celery's (JSON lines or text, secrets redacted: ``orchestrator.logs``),
for the worker and beat alike.
"""

from __future__ import annotations

import sys

from celery.signals import setup_logging

from orchestrator.adapters.celery_app import make_celery
from orchestrator.config import ConfigError, load_settings
from orchestrator.logs import configure_logging, register_settings_secrets

try:
    settings = load_settings()
except ConfigError as error:
    print(f"orchestrator: {error}", file=sys.stderr)
    raise SystemExit(2) from None

app = make_celery(settings, name="workers")
app.conf.include = ["workers.tasks"]
# Beat fires the database's schedules too (exactly once per slot, however many beats run).
app.conf.beat_scheduler = "workers.beat:ScheduleFiringBeat"

# Registered before the worker forks, so its own records are scrubbed as well as its children's.
register_settings_secrets(settings)


@setup_logging.connect
def _configure_logging(loglevel: int | str | None = None, **_: object) -> None:
    """Connected, this replaces Celery's own logging set-up (worker and beat)."""
    configure_logging(level=loglevel)
