"""Logging for every process: JSON lines in production, plain text under ``orchestrator dev``,
and no secret in either.

``configure_logging`` puts one handler on the root logger (stderr), formatted as
``$ORCHESTRATOR_LOG_FORMAT`` says (``json``, the default, or ``text``). The API, the Celery
worker and beat all call it, so every library's records (uvicorn's, Celery's) come out in
the same shape.

Redaction is two layers. ``RedactingFilter`` scrubs each record's message, arguments,
extra fields and traceback before it is formatted, replacing every registered secret (the
providers' API keys, the signing secret, passwords in URLs) and anything shaped like an API
token with ``[redacted]``; the formatters scrub the finished line once more, for whatever a
library smuggled in some other way. Secrets are registered from the settings
(``register_settings_secrets``) by the composition root and the Celery app, in every
process, before anything could log them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from orchestrator.config import Settings

LOG_FORMAT_ENV = "ORCHESTRATOR_LOG_FORMAT"
FORMATS = ("json", "text")
REDACTED = "[redacted]"
# API tokens are "orch_" and 43 URL-safe characters; the 12-character prefix that lists and
# messages show on purpose stays readable.
TOKEN_PATTERN = re.compile(r"orch_[A-Za-z0-9_-]{20,}")
# Shorter values would blank out ordinary words wherever they appear.
MIN_SECRET_LENGTH = 6
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(process)d %(message)s"
JSON_RENAMES = {"levelname": "level", "name": "logger"}
# uvicorn's copy of each message with terminal colour codes: noise in a JSON line.
JSON_LEFT_OUT = [*RESERVED_ATTRS, "color_message"]
# LogRecord's own attributes; anything else on a record came in through ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secrets(values: Iterable[str | None]) -> None:
    """Add values to redact from every log line from now on (in this process)."""
    fresh = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH}
    with _lock:
        _secrets.update(fresh)


def register_settings_secrets(settings: Settings) -> None:
    """Register every secret the settings hold: provider keys, the signing secret (whole and
    its key part) and any password in the database or Redis URL."""
    values: list[str | None] = [p.api_key.reveal() for p in settings.providers.values()]
    if settings.callbacks.signing_secret is not None:
        whole = settings.callbacks.signing_secret.reveal()
        values += [whole, whole.removeprefix("whsec_")]
    for url in (settings.database.url, settings.redis.url):
        values.append(_password(url))
    register_secrets(values)


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def redact(text: str) -> str:
    """``text`` with every registered secret and token-shaped string replaced."""
    # Longest first, so a secret that contains another is replaced whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, text) if "orch_" in text else text


def _redacted_value(value: object) -> object:
    """The value itself when its text holds no secret (so ``%d`` still gets a number),
    else its text, redacted."""
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = value if isinstance(value, str) else str(value)
    clean = redact(text)
    return value if clean == text else clean


class RedactingFilter(logging.Filter):
    """Scrubs a record before any formatter sees it; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {k: _redacted_value(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redacted_value(v) for v in record.args)
        if record.exc_info:
            # Rendered here so the traceback text can be scrubbed; formatters print exc_text.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                record.__dict__[key] = redact(value)
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _JsonFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _formatter(fmt: str) -> logging.Formatter:
    if fmt == "text":
        return _TextFormatter(TEXT_FORMAT)
    return _JsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMES, timestamp="time",
                          reserved_attrs=JSON_LEFT_OUT)


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so configuring again replaces it."""


QUIET_LIBRARIES = ("httpx", "httpcore")


def configure_logging(fmt: str | None = None, level: int | str | None = logging.INFO) -> None:
    """One stderr handler on the root logger, JSON or text, with redaction.

    ``fmt`` defaults to ``$ORCHESTRATOR_LOG_FORMAT``, else ``json``. Raises ``ValueError``
    for an unknown format, naming the ones there are.
    """
    chosen = (fmt or os.environ.get(LOG_FORMAT_ENV) or "json").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"{LOG_FORMAT_ENV}={chosen!r} is not a log format; use "
                         f"{' or '.join(FORMATS)}")
    handler = _OurHandler(sys.stderr)
    handler.setFormatter(_formatter(chosen))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if level is not None else logging.INFO)
    # httpx logs every request at INFO: a line per poll and per callback, thousands a
    # minute, saying less than our own outcome lines. Its warnings still show.
    for chatty in QUIET_LIBRARIES:
        logging.getLogger(chatty).setLevel(logging.WARNING)
