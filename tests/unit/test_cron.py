"""Next fire times, by a table: plain days, and daylight-saving nights in several zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain.cron import parse_cron, parse_every, parse_rule, parse_timezone


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def local(at: float, zone: str) -> str:
    return datetime.fromtimestamp(at, ZoneInfo(zone)).isoformat()


def slots(cron: str, zone: str, after_utc: str, n: int) -> list[str]:
    rule = parse_rule(cron, None, zone)
    return [local(at, zone) for at in islice(rule.slots(utc(after_utc)), n)]


# (cron, zone, after (UTC), the next slots as local times)
TABLE = [
    # A plain night, and the next ones.
    ("0 2 * * *", "Europe/Berlin", "2026-01-10T00:00:00",
     ["2026-01-10T02:00:00+01:00", "2026-01-11T02:00:00+01:00"]),
    # Spring forward (Berlin, 29 March 2026, 02:00 → 03:00): 02:30 does not exist and fires
    # once, at 03:30 summer time; the next night is normal again.
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00",
     ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"]),
    # Fall back (Berlin, 25 October 2026, 03:00 → 02:00): 02:30 happens twice, fires once.
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00",
     ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
    # Hourly through the spring gap: one slot per real hour, none twice.
    ("30 * * * *", "Europe/Berlin", "2026-03-29T00:00:00",
     ["2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-29T04:30:00+02:00"]),
    # Hourly through the repeated hour: both 02:30s, an hour apart in real time.
    ("30 * * * *", "Europe/Berlin", "2026-10-24T23:00:00",
     ["2026-10-25T01:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00",
      "2026-10-25T03:30:00+01:00"]),
    # New York: spring forward on 8 March 2026 at 02:00, fall back on 1 November.
    ("15 2 * * *", "America/New_York", "2026-03-07T12:00:00",
     ["2026-03-08T03:15:00-04:00", "2026-03-09T02:15:00-04:00"]),
    ("15 1 * * *", "America/New_York", "2026-10-31T12:00:00",
     ["2026-11-01T01:15:00-04:00", "2026-11-02T01:15:00-05:00"]),
    # Sydney, southern hemisphere: clocks go back on 5 April 2026 (03:00 → 02:00) and
    # forward on 4 October 2026 (02:00 → 03:00).
    ("30 2 * * *", "Australia/Sydney", "2026-04-04T00:00:00",
     ["2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"]),
    ("30 2 * * *", "Australia/Sydney", "2026-10-03T00:00:00",
     ["2026-10-04T03:30:00+11:00", "2026-10-05T02:30:00+11:00"]),
    # Lord Howe Island moves by half an hour (4 October 2026, 02:00 → 02:30).
    ("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00",
     ["2026-10-04T02:45:00+11:00", "2026-10-05T02:15:00+11:00"]),
    # A zone without daylight saving, and UTC: no surprises.
    ("0 9 * * 1-5", "Asia/Tokyo", "2026-11-20T12:00:00",
     ["2026-11-23T09:00:00+09:00", "2026-11-24T09:00:00+09:00"]),
    ("@daily", "UTC", "2026-11-23T10:00:00",
     ["2026-11-24T00:00:00+00:00", "2026-11-25T00:00:00+00:00"]),
]


@pytest.mark.parametrize(("cron", "zone", "after", "expected"), TABLE)
def test_next_fire_times(cron: str, zone: str, after: str, expected: list[str]) -> None:
    assert slots(cron, zone, after, len(expected)) == expected


@pytest.mark.parametrize(("cron", "day", "expected"), [
    # Berlin's fall-back day lasts 25 hours, its spring-forward day 23: rules that fire
    # every hour or more often keep their rhythm in real time, none skipped or doubled.
    ("*/15 * * * *", "2026-10-25", 25 * 4), ("*/15 * * * *", "2026-03-29", 23 * 4),
    ("* * * * *", "2026-10-25", 25 * 60), ("* * * * *", "2026-03-29", 23 * 60),
    ("@hourly", "2026-10-25", 25), ("0 */2 * * *", "2026-10-25", 12),
    # A daily rule fires once on either night.
    ("30 2 * * *", "2026-10-25", 1), ("30 2 * * *", "2026-03-29", 1),
])
def test_slots_in_a_local_day_around_daylight_saving(cron: str, day: str,
                                                     expected: int) -> None:
    zone = ZoneInfo("Europe/Berlin")
    start = datetime.fromisoformat(day).replace(tzinfo=zone).timestamp()
    end = (datetime.fromisoformat(day) + timedelta(days=1)).replace(tzinfo=zone).timestamp()
    rule = parse_rule(cron, None, "Europe/Berlin")
    found = list(takewhile(lambda at: at < end, rule.slots(start - 0.001)))
    assert len(found) == expected
    gaps = {b - a for a, b in zip(found, found[1:], strict=False)}
    if cron.startswith(("*", "@hourly")):
        assert len(gaps) <= 1, f"uneven in real time: {sorted(gaps)}"


def test_a_slot_at_the_very_instant_given_is_not_next() -> None:
    rule = parse_rule("0 2 * * *", None, "UTC")
    at = utc("2026-01-10T02:00:00")
    assert rule.next_slot(at) == at + 86400
    assert rule.next_slot(at - 0.001) == at


def test_every_is_aligned_to_the_epoch_so_every_process_agrees() -> None:
    rule = parse_rule(None, "30s")
    assert list(islice(rule.slots(utc("2026-01-10T02:00:05")), 3)) == [
        utc("2026-01-10T02:00:30"), utc("2026-01-10T02:01:00"), utc("2026-01-10T02:01:30")]


@given(cron=st.sampled_from(["*/7 * * * *", "30 * * * *", "0 2 * * *", "15 1,2,3 * * *"]),
       zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney",
                             "Australia/Lord_Howe", "UTC"]),
       after=st.floats(min_value=utc("2025-01-01T00:00:00"),
                       max_value=utc("2028-01-01T00:00:00")))
def test_slots_strictly_increase_and_each_matches_the_rule(cron: str, zone: str,
                                                           after: float) -> None:
    rule = parse_rule(cron, None, zone)
    found = list(islice(rule.slots(after), 30))
    assert found[0] > after
    assert all(b > a for a, b in zip(found, found[1:], strict=False))
    minute_field = cron.split()[0]
    for at in found:
        wall = datetime.fromtimestamp(at, ZoneInfo(zone))
        if minute_field.isdigit():
            # A slot moved by a gap keeps its minute unless the gap is not whole hours.
            assert wall.minute == int(minute_field) or zone == "Australia/Lord_Howe"


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1d", 86400), ("1.5s", 1.5), ("2 h", 7200)])
def test_every_intervals(text: str, seconds: float) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize(("call", "message"), [
    (lambda: parse_every("soon"), "write it like '30s'"),
    (lambda: parse_every("500ms"), "outside 1 s to 366 days"),
    (lambda: parse_every("367d"), "outside 1 s to 366 days"),
    (lambda: parse_every("9" * 400 + "d"), "not an interval"),
    (lambda: parse_every("1s\n"), "not an interval"),
    (lambda: parse_cron("0 2 31 2 *"), "never fires"),
    (lambda: parse_timezone("A" * 300), "not an IANA time zone"),
    (lambda: parse_every("5x"), "write it like"),
    (lambda: parse_cron("0 2 * *"), "has 4 fields; expected five"),
    (lambda: parse_cron("0 2 * * * *"), "has 6 fields; expected five"),
    (lambda: parse_cron("61 2 * * *"), "not a valid expression"),
    (lambda: parse_timezone("Mars/Olympus"), "not an IANA time zone"),
    (lambda: parse_rule("0 2 * * *", "30s"), "exactly one of 'cron'"),
    (lambda: parse_rule(None, None), "exactly one of 'cron'"),
])
def test_bad_rules_say_what_to_write(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
