"""Server-sent events: a stream that is reopened where it stopped until its ``end``, the
parsing of its lines, and the cursors it resumes from."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from orchestrator.client.errors import Unreachable
from orchestrator.client.steps import Emit, Flow, OpenStream, ReadLine, Sleep

MAX_RECONNECTS = 5  # consecutive failed attempts to reopen an event stream before giving up


def event_stream(path: str, last_event_id: str | None) -> Flow[dict[str, Any]]:
    """The events at ``path`` until the one named ``end``, the stream reopened (after a
    pause that grows) where it stopped when it closes or breaks before that; given up
    after ``MAX_RECONNECTS`` failures in a row, or at once if it was never reached."""
    resume = Resume.parse(last_event_id)
    failures, reached = 0, False
    while True:
        try:
            lines = yield OpenStream(path, resume.headers())
            parser = SseParser()
            while (line := (yield ReadLine(lines))) is not None:
                event = parser.feed(line)
                if event is None:
                    continue
                failures, reached = 0, True
                resume.note(event.get("id"))
                yield Emit(event)
                if event["event"] == "end":
                    return
        except Unreachable:
            failures += 1
            if not reached or failures >= MAX_RECONNECTS:
                raise
        yield Sleep(min(0.5 * 2 ** failures, 10.0))


class SseParser:
    """Server-sent events, a line at a time: ``feed`` answers the event a blank line ends."""

    def __init__(self) -> None:
        self.event: str = "message"
        self.event_id: str | None = None
        self.data: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        if not line:
            event = None
            if self.data:
                event = {"event": self.event, "id": self.event_id,
                         "data": _decoded("\n".join(self.data))}
            self.event, self.event_id, self.data = "message", None, []
            return event
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id" and "\0" not in value:
            self.event_id = value
        return None


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Server-sent events from their lines: ``{"event", "id", "data"}``, the data decoded
    from JSON where it is JSON."""
    parser = SseParser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


def _decoded(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


class Resume:
    """The two cursors of an event stream, sent back as ``s<n>,l<at>``."""

    def __init__(self, state: str | None = None, log: str | None = None) -> None:
        self.state, self.log = state, log

    @classmethod
    def parse(cls, value: str | None) -> Resume:
        if not value:
            return cls()
        if value.startswith("s"):
            state, _, log = value.partition(",")
            return cls(state, log or None)
        return cls(None, value)

    def note(self, event_id: object) -> None:
        if isinstance(event_id, str) and event_id.startswith("s"):
            self.state = event_id
        elif isinstance(event_id, str) and event_id.startswith("l"):
            self.log = event_id

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        cursors = ",".join(c for c in (self.state, self.log) if c)
        if cursors:
            headers["Last-Event-ID"] = cursors
        return headers
