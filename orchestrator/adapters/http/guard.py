"""``NetworkGuard``: the SSRF guard for callback URLs (the ``UrlGuard`` port), with DNS.

The guard resolves a URL's host once and returns the checked addresses (``pin``); the sender
connects to those addresses and nothing else, so a name that answers a public address to the
check and a private one to the connection (DNS rebinding) reaches nothing it should not.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from orchestrator.domain.netguard import (
    CallbackUrl,
    IPAddress,
    UnsafeUrl,
    parse_callback_url,
    parse_networks,
    vet_addresses,
)

if TYPE_CHECKING:
    from orchestrator.config import CallbackSettings

# ``socket.getaddrinfo``'s shape: called as ``resolver(host, port, 0, socket.SOCK_STREAM)``,
# answering ``(family, type, proto, canonname, sockaddr)`` tuples.
Resolver = Callable[..., Sequence[tuple[Any, ...]]]


@dataclass(frozen=True)
class PinnedTarget:
    """Where one send goes: the parsed URL and the checked addresses to connect to, in
    order. No addresses means the guard is off and the URL is sent as it is."""

    url: CallbackUrl
    addresses: tuple[IPAddress, ...]


class NetworkGuard:
    """Refuses callback URLs that are not http(s) or whose host resolves to any address that
    is not public (unless it is in ``allowed_networks``); ``allow_private_networks`` turns
    the address check off (the URL must still be a usable http(s) URL)."""

    def __init__(self, *, allow_private_networks: bool = False,
                 allowed_networks: Iterable[str] = (),
                 resolver: Resolver = socket.getaddrinfo) -> None:
        self.allow_private_networks = allow_private_networks
        self.allowed_networks = parse_networks(allowed_networks)
        self._resolve = resolver

    @classmethod
    def from_settings(cls, settings: CallbackSettings, *,
                      resolver: Resolver = socket.getaddrinfo) -> NetworkGuard:
        """The guard ``[callbacks]`` asks for."""
        return cls(allow_private_networks=settings.allow_private_networks,
                   allowed_networks=settings.allowed_networks, resolver=resolver)

    def check(self, url: str) -> None:
        """Raise ``UnsafeUrl`` (its message says why) unless ``url`` may be called back."""
        self.pin(url)

    def pin(self, url: str) -> PinnedTarget:
        """Check ``url`` and return the addresses a request to it must connect to; raises
        ``UnsafeUrl``. The host is resolved once, here."""
        parsed = parse_callback_url(url)
        if self.allow_private_networks:
            return PinnedTarget(parsed, ())
        resolved = () if parsed.literal is not None else self._addresses(parsed)
        return PinnedTarget(parsed, vet_addresses(parsed, resolved, self.allowed_networks))

    def _addresses(self, url: CallbackUrl) -> list[IPAddress]:
        try:
            answers = self._resolve(url.host, url.port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UnsafeUrl(f"callback URL '{url.shown}': cannot resolve host "
                            f"'{url.host}': {reason}") from None
        addresses: list[IPAddress] = []
        for *_, sockaddr in answers:
            try:
                addresses.append(ipaddress.ip_address(sockaddr[0]))
            except (ValueError, TypeError, IndexError):
                continue  # not an IP socket address (no other family is asked for)
        return addresses


def static_resolver(table: Mapping[str, Sequence[str]]) -> Resolver:
    """A resolver answering from ``table`` (host name → addresses), for tests and demos;
    any other name fails as an unknown name does."""

    def resolve(host: str, port: int, *_: Any, **__: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers: list[tuple[Any, ...]] = []
        for text in table[host]:
            if ipaddress.ip_address(text).version == 6:
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (text, port, 0, 0)))
            else:
                answers.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (text, port)))
        return answers

    return resolve


class RememberedChecks:
    """The registration-time ``check`` with each URL's answer remembered for ``ttl_s``: a
    batch of 10,000 jobs with one callback_url resolves its host once, not 10,000 times.
    Deliveries do not go through this: each send resolves and pins afresh."""

    def __init__(self, guard: NetworkGuard, ttl_s: float = 10.0, most: int = 1024) -> None:
        self._guard = guard
        self._ttl_s = ttl_s
        self._most = most
        self._answers: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def check(self, url: str) -> None:
        now = time.monotonic()
        with self._lock:
            remembered = self._answers.get(url)
        if remembered is None or remembered[0] < now:
            try:
                self._guard.check(url)
                why = None
            except UnsafeUrl as refused:
                why = str(refused)
            with self._lock:
                if len(self._answers) >= self._most:
                    self._answers.clear()
                self._answers[url] = (now + self._ttl_s, why)
            remembered = (0.0, why)
        if remembered[1] is not None:
            raise UnsafeUrl(remembered[1])


_T = TypeVar("_T")
# ``send(url, headers, extensions)``: one request, made by the caller's own client call.
PinnedSend = Callable[[str, dict[str, str], dict[str, str]], _T]


def send_pinned(target: PinnedTarget, headers: Mapping[str, str], send: PinnedSend[_T], *,
                most: int = 3) -> _T:
    """``send`` one request to ``target``, connecting only to its checked addresses.

    Each try goes to an address's IP literal (``CallbackUrl.url_for``) with the original
    ``Host`` header and, for https, the host name for SNI and certificate checks. A
    ``ConnectError`` or ``ConnectTimeout`` (nothing was sent) moves on to the next checked
    address, as ``socket.create_connection`` goes down its list, for the first ``most`` of
    them (each unreachable one costs a connect time-out); the last one's answer, or error,
    is the caller's. With no addresses (the guard is off) the URL is sent as it is,
    with ``headers`` unchanged. Shared by the callback sender and the output-file download.
    """
    if not target.addresses:
        return send(target.url.original, dict(headers), {})
    url = target.url
    pinned = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
    pinned["Host"] = url.host_header
    extensions: dict[str, str] = {}
    if url.scheme == "https" and url.literal is None:
        extensions["sni_hostname"] = url.host
        # A pooled connection is keyed by the IP alone, whatever name its TLS session was
        # verified for; closing it keeps one name's requests off another name's session on
        # a shared IP (a CDN, an SNI-routing load balancer).
        pinned["Connection"] = "close"
    *first, last = target.addresses[:most]
    for address in first:
        try:
            return send(url.url_for(address), dict(pinned), dict(extensions))
        except (httpx.ConnectError, httpx.ConnectTimeout):
            continue
    return send(url.url_for(last), pinned, extensions)
