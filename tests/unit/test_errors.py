"""``orchestrator.domain.errors`` against recorded-looking responses: status, headers and
body in, the kind of trouble (and the wait) out."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from orchestrator.domain.errors import (
    NotReady,
    Permanent,
    ProviderError,
    RateLimited,
    Transient,
    classify_response,
    error_text,
    parse_json_body,
    retry_after_seconds,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
HTTP_DATE_IN_90_S = format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True)
NOT_READY = frozenset({408, 504})

NGINX_502 = b"""<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx/1.25.3</center>
</body>
</html>
"""


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    not_ready: frozenset[int] = frozenset()
    kind: type[ProviderError] | None = None
    wait: float | None = None  # retry_after of RateLimited / NotReady
    code: str | None = None  # Permanent.code
    says: str = ""  # a piece of the message


CASES = [
    Case("2xx", 200, b'{"run_id": "r1"}'),
    Case("204-no-body", 204),
    Case("html-502", 502, NGINX_502, {"Content-Type": "text/html"}, kind=Transient, says="502"),
    Case(
        "503-json",
        503,
        b'{"error": "Service temporarily unavailable"}',
        kind=Transient,
        says="Service temporarily unavailable",
    ),
    Case("truncated-json-500", 500, b'{"error": "boo', kind=Transient, says="server error"),
    Case(
        "429-cordage-body",
        429,
        b'{"error": "Rate limit exceeded.", "retry_after": 30}',
        kind=RateLimited,
        wait=30.0,
        says="Rate limit exceeded.",
    ),
    Case(
        "429-retry-after-seconds", 429, headers={"Retry-After": "120"}, kind=RateLimited, wait=120.0
    ),
    Case(
        "429-retry-after-http-date",
        429,
        headers={"Retry-After": HTTP_DATE_IN_90_S},
        kind=RateLimited,
        wait=90.0,
    ),
    Case(
        "429-retry-after-date-in-past",
        429,
        headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
        kind=RateLimited,
        wait=0.0,
    ),
    Case(
        "429-body-retry-after-zero",
        429,
        b'{"error": "Rate limit exceeded.", "retry_after": 0}',
        kind=RateLimited,
        wait=0.0,
    ),
    Case(
        "429-remaining-0-and-reset",
        429,
        headers={
            "X-RateLimit-Limit": "60",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "45",
        },
        kind=RateLimited,
        wait=45.0,
    ),
    Case(
        "429-longest-hint-wins",
        429,
        b'{"retry_after": 30}',
        {"Retry-After": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "45"},
        kind=RateLimited,
        wait=45.0,
    ),
    Case(
        "429-reset-ignored-while-remaining",
        429,
        headers={"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "45"},
        kind=RateLimited,
        wait=1.0,
    ),
    Case("429-no-hint-waits-a-second", 429, b"Too Many Requests", kind=RateLimited, wait=1.0),
    Case(
        "429-garbage-retry-after", 429, headers={"Retry-After": "soon"}, kind=RateLimited, wait=1.0
    ),
    Case(
        "401",
        401,
        b'{"error": "Invalid API key"}',
        kind=Permanent,
        code="provider_auth",
        says="refused the API key",
    ),
    Case("403", 403, kind=Permanent, code="provider_auth"),
    Case(
        "404-cordage",
        404,
        b'{"error": "Webhook not found"}',
        kind=Permanent,
        code="provider_not_found",
        says="Webhook not found",
    ),
    Case("404-html", 404, b"<h1>Not Found</h1>", kind=Permanent, code="provider_not_found"),
    Case(
        "400",
        400,
        b'{"detail": "inputs must be an object"}',
        kind=Permanent,
        code="provider_error",
        says="inputs must be an object",
    ),
    Case(
        "408-not-ready",
        408,
        b'{"error": "Request Timeout"}',
        not_ready=NOT_READY,
        kind=NotReady,
        wait=0.0,
    ),
    Case("504-not-ready", 504, NGINX_502, not_ready=NOT_READY, kind=NotReady, wait=0.0),
    Case(
        "504-not-ready-retry-after",
        504,
        headers={"Retry-After": "5"},
        not_ready=NOT_READY,
        kind=NotReady,
        wait=5.0,
    ),
    Case("408-elsewhere-transient", 408, kind=Transient),
    Case("504-elsewhere-transient", 504, NGINX_502, kind=Transient),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_classify_response(case: Case) -> None:
    error = classify_response(
        case.status,
        case.headers,
        case.content,
        NOW,
        provider="cordage",
        not_ready_statuses=case.not_ready,
    )
    if case.kind is None:
        assert error is None
        return
    assert type(error) is case.kind
    assert "cordage" in error.message
    assert case.says in error.message
    if case.wait is not None:
        assert isinstance(error, RateLimited | NotReady)
        assert error.retry_after == pytest.approx(case.wait)
    if case.code is not None:
        assert isinstance(error, Permanent)
        assert error.code == case.code


def test_a_5xx_may_have_been_received() -> None:
    error = classify_response(500, {}, b"", NOW, provider="p")
    assert isinstance(error, Transient)
    assert error.request_sent is True


def test_header_names_are_case_insensitive() -> None:
    assert retry_after_seconds({"retry-after": "7"}, None, NOW) == 7.0
    assert retry_after_seconds({"RETRY-AFTER": "7"}, None, NOW) == 7.0


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({}, None, None),
        ({"Retry-After": "-5"}, None, 0.0),
        ({"Retry-After": "2.5"}, None, 2.5),
        ({"Retry-After": "nan"}, None, None),
        ({}, {"retry_after": "12"}, 12.0),
        ({}, {"retry_after": True}, None),
        ({}, {"retry_after": None}, None),
        ({}, ["retry_after", 3], None),
        ({"X-RateLimit-Remaining": "0"}, None, None),
        ({"X-RateLimit-Remaining": " 0 ", "X-RateLimit-Reset": "9"}, None, 9.0),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], body: object, expected: float | None) -> None:
    assert retry_after_seconds(headers, body, NOW) == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b'{"run_id": "r1"}', {"run_id": "r1"}), (b"", None), (b"[1, 2]", [1, 2])],
)
def test_parse_json_body(content: bytes, expected: object) -> None:
    assert parse_json_body(content) == expected


@pytest.mark.parametrize(
    "content",
    [b'{"run_id": "550e8400-e29b', b"<html>502</html>", b"\xff\xfe\x00garbage", b'{"a": 1}}'],
    ids=["truncated", "html", "not-utf8", "trailing-junk"],
)
def test_parse_json_body_makes_bad_bodies_transient(content: bytes) -> None:
    with pytest.raises(Transient, match="malformed JSON"):
        parse_json_body(content)


def test_error_text_prefers_the_runtimes_message() -> None:
    assert error_text({"error": "Webhook not found"}, "x") == "Webhook not found"
    assert error_text({"detail": "bad"}, "x") == "bad"
    assert error_text({"error": ""}, "fallback") == "fallback"
    assert error_text("plain", "fallback") == "fallback"
    assert len(error_text({"error": "e" * 5000}, "x")) == 500


# Pathological inputs that once crashed the classification.


def test_a_huge_integer_retry_after_is_not_a_crash() -> None:
    body = b'{"retry_after": 1' + b"0" * 400 + b"}"
    error = classify_response(429, {}, body, NOW, provider="p")
    assert isinstance(error, RateLimited)


@pytest.mark.parametrize("content", [b"[" * 100_000, b"1" * 5000], ids=["deep", "long-int"])
def test_pathological_json_is_transient(content: bytes) -> None:
    with pytest.raises(Transient):
        parse_json_body(content)


@pytest.fixture
def new_york_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york_time")
def test_an_http_date_is_gmt_whatever_the_local_zone() -> None:
    assert os.environ["TZ"] == "America/New_York"
    header = HTTP_DATE_IN_90_S.replace("GMT", "-0000")
    assert retry_after_seconds({"Retry-After": header}, None, NOW) == pytest.approx(90.0)


def test_a_503_keeps_its_retry_after() -> None:
    error = classify_response(503, {"Retry-After": "7"}, b"", NOW, provider="p")
    assert isinstance(error, Transient) and error.retry_after == 7.0


def test_an_absurd_retry_after_is_capped_at_an_hour() -> None:
    for body in (b'{"retry_after": 1e306}', b'{"retry_after": 1000000000}'):
        error = classify_response(429, {}, body, NOW, provider="p")
        assert isinstance(error, RateLimited) and error.retry_after == 3600.0
