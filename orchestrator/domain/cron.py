"""When a schedule fires: its slots, as epoch seconds, from a cron rule or a fixed interval.

Pure: time comes in as an argument. ``croniter`` matches the five cron fields against wall
clock times; turning a wall clock time into an instant is done here, explicitly, so the
daylight-saving rules are ours and tested by a table (``tests/unit/test_cron.py``):

- A wall time that does not exist (02:30 on a spring-forward night) fires once, at the
  instant it would have been before the clocks moved (03:30 summer time).
- A wall time that happens twice (02:30 on a fall-back night) fires once, the first time;
  a rule that fires every hour (hour field ``*``) fires in the repeated hour as well, so an
  hourly job keeps its real-time rhythm. This is Vixie/Debian cron's behaviour.
- Two wall times that land on one instant fire once: slots are strictly increasing.

``every`` rules are intervals in real time, aligned to the epoch (``every = "30s"`` fires at
:00 and :30 of each minute), so every process computes the same slots without agreeing on
a start.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

_EVERY_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_EVERY_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
MIN_EVERY_S = 1.0
MAX_EVERY_S = 366 * 86400.0  # rarer than yearly is a cron rule's job
# A wall time is looked at from this far before ``after``, to see both folds of a repeated hour.
_LOOKBACK = timedelta(hours=3)


@dataclass(frozen=True)
class Rule:
    """A parsed ``cron`` or ``every`` rule and the time zone its wall times are in."""

    cron: str | None
    every_s: float | None
    timezone: str

    @property
    def text(self) -> str:
        return f"cron '{self.cron}'" if self.cron else f"every {self.every_s:g} s"

    def slots(self, after: float) -> Iterator[float]:
        """The slots strictly after ``after``, in order, without end."""
        if self.every_s is not None:
            return _every_slots(self.every_s, after)
        assert self.cron is not None
        return _cron_slots(self.cron, ZoneInfo(self.timezone), after)

    def next_slot(self, after: float) -> float:
        return next(self.slots(after))

    def count(self, after: float, until: float, *, cap: int) -> int:
        """How many slots lie in (``after``, ``until``]; counting stops at ``cap``."""
        if self.every_s is not None:
            return min(cap, max(0, math.floor(until / self.every_s)
                                - math.floor(after / self.every_s)))
        found = 0
        for slot in self.slots(after):
            if slot > until or found >= cap:
                break
            found += 1
        return found


def parse_rule(cron: str | None, every: str | None, timezone: str = "UTC") -> Rule:
    """Validate a rule; ValueError with a message that says what to write."""
    if (cron is None) == (every is None):
        raise ValueError("give exactly one of 'cron' (five fields, like '0 2 * * *') "
                         "or 'every' (like '30s', '5m', '1h')")
    zone = parse_timezone(timezone)
    if cron is not None:
        return Rule(parse_cron(cron), None, zone)
    assert every is not None
    return Rule(None, parse_every(every), zone)


def parse_cron(text: str) -> str:
    cron = " ".join(text.split())
    if cron.lower() in _ALIASES:
        return cron.lower()
    fields = cron.split(" ")
    if len(fields) != 5:
        raise ValueError(f"cron '{text}' has {len(fields)} fields; expected five: minute hour "
                         "day-of-month month day-of-week, like '0 2 * * *'")
    if not croniter.is_valid(cron):
        raise ValueError(f"cron '{text}' is not a valid expression; expected five fields: "
                         "minute hour day-of-month month day-of-week, like '0 2 * * *'")
    try:  # a rule no date matches (31 February) parses but never fires
        croniter(cron, datetime(2000, 1, 1)).get_next(datetime)
    except Exception:
        raise ValueError(f"cron '{text}' never fires: no date matches it") from None
    return cron


def parse_every(text: str) -> float:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"1d"`` → seconds (at least one second)."""
    compact = text.replace(" ", "")
    parts = _EVERY_PART.findall(compact) if len(compact) <= 40 else []
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"every '{text}' is not an interval; write it like '30s', '5m', "
                         "'1h30m' or '1d'")
    seconds = sum(float(n) * _EVERY_UNITS[u] for n, u in parts)
    if not MIN_EVERY_S <= seconds <= MAX_EVERY_S:
        raise ValueError(f"every '{text}' is outside {MIN_EVERY_S:g} s to 366 days; for "
                         "rarer runs write a cron rule")
    return seconds


def parse_timezone(name: str) -> str:
    try:
        if len(name) > 64:  # the longest IANA name has 32 characters
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"'{name}' is not an IANA time zone; write one like 'UTC' or "
                         "'Europe/Berlin'") from None
    return name


def _every_slots(every_s: float, after: float) -> Iterator[float]:
    n = math.floor(after / every_s) + 1
    while True:
        yield n * every_s
        n += 1


def _cron_slots(cron: str, zone: ZoneInfo, after: float) -> Iterator[float]:
    """Wall times in order do not map to instants in order around a change of offset (the
    repeated hour's second fold comes after the next wall times' first), so instants wait
    in a heap until no later wall time can map before them: an offset changes by less than
    ``_LOOKBACK``."""
    every_hour = cron.split(" ")[1] == "*" if not cron.startswith("@") else cron == "@hourly"
    start = datetime.fromtimestamp(after, zone).replace(tzinfo=None, fold=0) - _LOOKBACK
    walls = croniter(cron, start)
    pending: list[float] = []
    last = after
    while True:
        wall: datetime = walls.get_next(datetime)
        instants = _instants(wall, zone, both_folds=every_hour)
        for instant in instants:
            heapq.heappush(pending, instant)
        settled = min(instants) - _LOOKBACK.total_seconds()
        while pending and pending[0] <= settled:
            instant = heapq.heappop(pending)
            if instant > last:
                last = instant
                yield instant


def _instants(wall: datetime, zone: ZoneInfo, *, both_folds: bool) -> list[float]:
    """The instants a wall time stands for: one, a shifted one in a gap, or two in a fold."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.timestamp()]
    if _exists(first):  # it happens twice: the clocks went back over it
        return [first.timestamp(), second.timestamp()] if both_folds else [first.timestamp()]
    # It never happens: fold 0 reads it with the offset before the jump, i.e. as late as
    # the time was meant (02:30 winter time is 03:30 summer time).
    return [first.timestamp()]


def _exists(local: datetime) -> bool:
    back = local.astimezone(UTC).astimezone(local.tzinfo)
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


def gap_after(rule: Rule, slot: float) -> float:
    """Seconds from ``slot`` to the rule's next slot."""
    return rule.next_slot(slot) - slot
