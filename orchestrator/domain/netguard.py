"""The SSRF guard's decisions: which callback URLs and addresses may be reached.

Pure: no sockets and no HTTP. The adapter (``orchestrator.adapters.http.guard``) resolves the
host and asks :func:`vet_addresses` which of the answers may be connected to; the sender then
connects to exactly those, so a second DNS answer (rebinding) never gets a say.

A host is read the way a browser or ``inet_aton`` reads it: ``0x7f000001``, ``2130706433``,
``0177.0.0.1`` and ``127.1`` all denote 127.0.0.1 and are recognised as such without DNS.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = {"http": 80, "https": 443}
ADVICE = ("callbacks may only go to public addresses (set [callbacks].allow_private_networks "
          "or add the subnet to allowed_networks to allow it)")


class UnsafeUrl(ValueError):
    """A callback URL that may not be used; the message says why (and never holds a trace)."""


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


# First match wins, so the narrow entries come before the ranges that hold them. Whatever is
# not listed but still not globally routable is refused by the ``is_global`` fallback.
_REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple((_net(n), why) for n, why in (
    ("0.0.0.0/32", "the unspecified address"),
    ("0.0.0.0/8", "a 'this network' address (reserved)"),
    ("127.0.0.0/8", "a loopback address"),
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("169.254.169.254/32", "the cloud metadata address (link-local)"),
    ("169.254.0.0/16", "a link-local address"),
    ("100.64.0.0/10", "a carrier-grade NAT address (shared, not public)"),
    ("192.0.2.0/24", "a documentation address (reserved)"),
    ("198.51.100.0/24", "a documentation address (reserved)"),
    ("203.0.113.0/24", "a documentation address (reserved)"),
    ("198.18.0.0/15", "a benchmarking address (reserved)"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "an IPv4-compatible address (deprecated, reserved)"),
    ("64:ff9b:1::/48", "a local-use NAT64 address (not public)"),
    ("100::/64", "a discard-only address (reserved)"),
    ("2001:db8::/32", "a documentation address (reserved)"),
    ("fc00::/7", "a unique-local address (private)"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address (deprecated, private)"),
    ("ff00::/8", "a multicast address"),
    ("::/8", "a reserved address"),
))
_NAT64 = _net("64:ff9b::/96")


def refusal(address: IPAddress, allowed_networks: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be reached ("a private address"), or None if it may.

    An address inside one of ``allowed_networks`` may always be reached. An IPv4-mapped IPv6
    address is judged as the IPv4 address it maps; 6to4, Teredo and NAT64 addresses are
    refused when the IPv4 address they embed would be.
    """
    allowed = tuple(allowed_networks)
    if any(address in network for network in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        why = refusal(address.ipv4_mapped, allowed)
        return None if why is None else f"the IPv4-mapped form of {address.ipv4_mapped}, {why}"
    for kind, inner in _embedded_ipv4(address):
        why = refusal(inner, allowed)
        if why is not None:
            return f"a {kind} address embedding {inner}, {why}"
    for network, why in _REFUSED:
        if address in network:
            return why
    if not address.is_global:
        return "a reserved address (not globally routable)"
    return None


def _embedded_ipv4(address: IPAddress) -> list[tuple[str, ipaddress.IPv4Address]]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        found.append(("Teredo", address.teredo[1]))
    if address in _NAT64:
        found.append(("NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)))
    return found


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``["10.1.2.0/24", "fd00::/8"]`` as networks (host bits allowed, as in the config)."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


@dataclass(frozen=True)
class CallbackUrl:
    """A parsed http(s) callback URL: what to resolve, and how to rebuild it for an address."""

    original: str
    scheme: str
    host: str  # ASCII, lower case, no brackets: a DNS name or an address's text
    port: int
    literal: IPAddress | None  # the address the host denotes, when it is an IP literal
    userinfo: str  # "user:password" as written (percent-encoded), or ""
    target: str  # path and query, at least "/"; the fragment is never sent

    @property
    def host_header(self) -> str:
        """The ``Host`` header a request to this URL carries."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == SCHEMES[self.scheme] else f"{host}:{self.port}"

    @property
    def shown(self) -> str:
        """The URL for messages: any password hidden, at most 200 characters."""
        return _shorten(self.original)

    def url_for(self, address: IPAddress) -> str:
        """This URL with its host replaced by ``address``: what to send to, so nothing
        resolves the name again between the check and the connection."""
        host = f"[{address}]" if address.version == 6 else str(address)
        port = "" if self.port == SCHEMES[self.scheme] else f":{self.port}"
        userinfo = f"{self.userinfo}@" if self.userinfo else ""
        return f"{self.scheme}://{userinfo}{host}{port}{self.target}"


def parse_callback_url(url: str) -> CallbackUrl:
    """Parse ``url`` as an absolute http(s) URL with a usable host, or raise ``UnsafeUrl``."""
    shown = _shorten(url)
    if any(ch <= " " or ch == "\x7f" for ch in url):
        raise UnsafeUrl(f"callback URL '{shown}' contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"callback URL '{shown}' is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        what = f"has scheme '{scheme}'" if scheme else "is not an absolute URL"
        raise UnsafeUrl(f"callback URL '{shown}' {what}; only http and https URLs are allowed")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if "\\" in parts.netloc or "@" in userinfo:
        raise UnsafeUrl(f"callback URL '{shown}' has an ambiguous authority "
                        "(a backslash, or '@' more than once)")
    if port == 0:
        raise UnsafeUrl(f"callback URL '{shown}' has port 0, which cannot be connected to")
    host, literal = _read_host(parts, hostport, shown)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return CallbackUrl(original=url, scheme=scheme, host=host,
                       port=port if port is not None else SCHEMES[scheme], literal=literal,
                       userinfo=userinfo, target=target)


def _read_host(parts: SplitResult, hostport: str, shown: str) -> tuple[str, IPAddress | None]:
    raw = parts.hostname or ""
    if not raw:
        raise UnsafeUrl(f"callback URL '{shown}' has no host")
    if hostport.startswith("["):
        try:
            v6 = ipaddress.IPv6Address(raw)
        except ValueError:
            raise UnsafeUrl(f"callback URL '{shown}' has '{raw}' in brackets, "
                            "which is not an IPv6 address") from None
        if v6.scope_id:
            raise UnsafeUrl(f"callback URL '{shown}' has an IPv6 zone id ('%{v6.scope_id}')")
        return str(v6), v6
    try:
        host = raw.encode("idna").decode("ascii") if not raw.isascii() else raw
    except UnicodeError:
        raise UnsafeUrl(f"callback URL '{shown}' has host '{raw}', which is not a valid "
                        "host name") from None
    host = host.lower()
    try:
        v4 = numeric_ipv4(host)
    except UnsafeUrl as exc:
        raise UnsafeUrl(f"callback URL '{shown}': {exc}") from None
    if v4 is not None:
        return str(v4), v4
    if not _is_hostname(host):
        raise UnsafeUrl(f"callback URL '{shown}' has host '{_shorten(raw)}', which is not a "
                        "valid host name")
    return host, None


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _is_hostname(host: str) -> bool:
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_OCTAL = re.compile(r"0[0-7]+")
_HEX = re.compile(r"0x[0-9a-f]+")


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address ``host`` denotes when its last label is a number, read as
    ``inet_aton`` and browsers read it (1 to 4 parts, each decimal, 0-octal or 0x-hex; the
    last part fills the remaining bytes); None when the host is a name.

    Raises ``UnsafeUrl`` when the host ends in a number but is no valid address
    (``1.2.3.256``, ``08.1.1.1``): no resolver would be asked about it either.
    """
    labels = host.lower().split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()  # "127.0.0.1." is 127.0.0.1, as in a browser
    if not _NUMBER.fullmatch(labels[-1]):
        return None
    numbers = [_ipv4_part(label) for label in labels] if len(labels) <= 4 else None
    if numbers is None or None in numbers:
        raise UnsafeUrl(f"host '{_shorten(host)}' looks like an IPv4 address but is not one")
    parts = [n for n in numbers if n is not None]
    *head, last = parts
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise UnsafeUrl(f"host '{_shorten(host)}' looks like an IPv4 address but is out of range")
    value = last
    for i, n in enumerate(head):
        value |= n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _ipv4_part(label: str) -> int | None:
    if _HEX.fullmatch(label):
        return int(label[2:], 16)
    if _OCTAL.fullmatch(label):
        return int(label[1:], 8)
    if _DECIMAL.fullmatch(label):
        return int(label)
    return None


def vet_addresses(url: CallbackUrl, resolved: Iterable[IPAddress],
                  allowed_networks: Iterable[IPNetwork] = ()) -> tuple[IPAddress, ...]:
    """The addresses to connect to for ``url``, given what its host resolved to (for an IP
    literal: that address); raises ``UnsafeUrl`` if any one of them may not be reached, so
    a name with one public and one private address is refused.

    IPv4-mapped addresses come back as the IPv4 address they map, duplicates once, in order.
    """
    allowed = tuple(allowed_networks)
    addresses = [url.literal] if url.literal is not None else list(resolved)
    if not addresses:
        raise UnsafeUrl(f"callback URL '{url.shown}': host '{url.host}' resolves to no address")
    for address in addresses:
        why = refusal(address, allowed)
        if why is not None:
            raise UnsafeUrl(f"callback URL '{url.shown}' resolves to {_show(address)}, {why}; "
                            f"{ADVICE}")
    unique: dict[IPAddress, None] = {}
    for address in addresses:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        unique[mapped or address] = None
    return tuple(unique)


def check_url(url: str, resolved: Iterable[IPAddress],
              allowed_networks: Iterable[IPNetwork] = ()) -> tuple[IPAddress, ...]:
    """:func:`parse_callback_url` then :func:`vet_addresses`, for a URL given as text."""
    return vet_addresses(parse_callback_url(url), resolved, allowed_networks)


def _show(address: IPAddress) -> str:
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return f"::ffff:{mapped}" if mapped is not None else str(address)


_PASSWORD = re.compile(r"(//[^/?#@]*?:)[^/?#]*@")


def _shorten(text: str) -> str:
    """``text`` for a message: a URL's password hidden, at most 200 characters."""
    text = _PASSWORD.sub(r"\1***@", text, count=1)
    return text if len(text) <= 200 else text[:197] + "..."
