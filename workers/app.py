"""The Celery app, configured from ``orchestrator.toml`` (or ``$ORCHESTRATOR_CONFIG``).

A configuration error stops the process here, at start, with the message that names the key.
"""

from __future__ import annotations

import sys

from orchestrator.adapters.celery_app import make_celery
from orchestrator.config import ConfigError, load_settings

try:
    settings = load_settings()
except ConfigError as error:
    print(f"orchestrator: {error}", file=sys.stderr)
    raise SystemExit(2) from None

app = make_celery(settings, name="workers")
app.conf.include = ["workers.tasks"]
