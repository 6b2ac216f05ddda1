"""The SSRF guard: which callback URLs and addresses are refused, and why (issue 5)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.adapters.http.guard import NetworkGuard, static_resolver
from orchestrator.config import CallbackSettings
from orchestrator.domain.netguard import (
    ADVICE,
    UnsafeUrl,
    check_url,
    numeric_ipv4,
    parse_callback_url,
    parse_networks,
    refusal,
)

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:4700:4700::1111"


def no_dns(host: str, *_: Any) -> list[tuple[Any, ...]]:
    raise AssertionError(f"an IP literal was resolved: {host!r}")


def guard(table: dict[str, list[str]] | None = None, **kwargs: Any) -> NetworkGuard:
    return NetworkGuard(resolver=static_resolver(table or {}), **kwargs)


# -- URLs refused whatever DNS says --------------------------------------------------------

@pytest.mark.parametrize(("url", "address", "why"), [
    ("http://10.0.0.1/", "10.0.0.1", "a private address"),
    ("http://172.16.5.4/", "172.16.5.4", "a private address"),
    ("http://192.168.1.1/", "192.168.1.1", "a private address"),
    ("http://127.0.0.1:8080/hook", "127.0.0.1", "a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "metadata"),
    ("http://169.254.1.1/", "169.254.1.1", "a link-local address"),
    ("http://100.64.0.1/", "100.64.0.1", "carrier-grade NAT"),
    ("http://0.0.0.0/", "0.0.0.0", "the unspecified address"),
    ("http://224.0.0.1/", "224.0.0.1", "a multicast address"),
    ("http://240.0.0.1/", "240.0.0.1", "a reserved address"),
    ("http://255.255.255.255/", "255.255.255.255", "the broadcast address"),
    ("http://[::1]/", "::1", "a loopback address"),
    ("http://[::]/", "::", "the unspecified address"),
    ("http://[fd00::1]/", "fd00::1", "a unique-local address"),
    ("http://[fc12:3456::1]/", "fc12:3456::1", "a unique-local address"),
    ("http://[fe80::1]/", "fe80::1", "a link-local address"),
    ("http://[ff02::1]/", "ff02::1", "a multicast address"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, a loopback"),
    ("http://[::ffff:a00:1]/", "::ffff:10.0.0.1", "IPv4-mapped form of 10.0.0.1, a private"),
    ("http://[2002:a00:1::1]/", "2002:a00:1::1", "6to4 address embedding 10.0.0.1"),
    ("http://[2002:7f00:1::]/", "2002:7f00:1::", "6to4 address embedding 127.0.0.1"),
    ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe",
     "NAT64 address embedding 169.254.169.254"),
    ("http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
     "Teredo address embedding 10.0.0.1"),
    ("http://0x7f000001/", "127.0.0.1", "a loopback address"),
    ("http://2130706433/", "127.0.0.1", "a loopback address"),
    ("http://0177.0.0.1/", "127.0.0.1", "a loopback address"),
    ("http://127.1/", "127.0.0.1", "a loopback address"),
    ("http://0x7f.1/", "127.0.0.1", "a loopback address"),
    ("http://0xA9.0xFE.0xA9.0xFE/", "169.254.169.254", "metadata"),
    ("http://0/", "0.0.0.0", "the unspecified address"),
    ("http://10.1/", "10.0.0.1", "a private address"),
    ("http://127.0.0.1./", "127.0.0.1", "a loopback address"),
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "127.0.0.1", "a loopback address"),
    ("https://user:pw@10.0.0.1:8443/x?y=1#frag", "10.0.0.1", "a private address"),
])
def test_a_url_to_a_non_public_address_is_refused_without_dns(
        url: str, address: str, why: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        NetworkGuard(resolver=no_dns).check(url)
    message = str(caught.value)
    assert f"resolves to {address}, " in message
    assert why in message
    assert message.endswith(ADVICE)
    assert "Traceback" not in message


def test_the_message_says_why_in_full() -> None:
    with pytest.raises(UnsafeUrl) as caught:
        guard().check("http://10.0.0.1/")
    assert str(caught.value) == (
        "callback URL 'http://10.0.0.1/' resolves to 10.0.0.1, a private address; callbacks "
        "may only go to public addresses (set [callbacks].allow_private_networks or add the "
        "subnet to allowed_networks to allow it)")


def test_a_password_in_the_url_is_not_repeated_in_the_message() -> None:
    with pytest.raises(UnsafeUrl) as caught:
        guard().check("https://user:hunter2@10.0.0.1/hook")
    assert "hunter2" not in str(caught.value)
    assert "https://user:***@10.0.0.1/hook" in str(caught.value)


@pytest.mark.parametrize(("url", "expected"), [
    ("ftp://example.com/", "has scheme 'ftp'; only http and https"),
    ("file:///etc/passwd", "has scheme 'file'"),
    ("gopher://example.com:70/", "has scheme 'gopher'"),
    ("javascript:alert(1)", "has scheme 'javascript'"),
    ("example.com/hook", "is not an absolute URL"),
    ("//example.com/hook", "is not an absolute URL"),
    ("", "is not an absolute URL"),
    ("http:///hook", "has no host"),
    ("http://:80/hook", "has no host"),
    ("http://user@/hook", "has no host"),
    ("http://exa mple.com/", "whitespace or control characters"),
    ("http://example.com/\r\nX-Injected: 1", "whitespace or control characters"),
    ("http://exam\tple.com/", "whitespace or control characters"),
    ("http://example.com\\@10.0.0.1/", "ambiguous authority"),
    ("http://a@b@example.com/", "ambiguous authority"),
    ("http://example.com:0/", "port 0"),
    ("http://example.com:99999/", "not a valid URL"),
    ("http://example.com:http/", "not a valid URL"),
    ("http://[::1/", "not a valid URL"),
    ("http://[fe80::1%25eth0]/", "zone id"),
    ("http://ex%41mple.com/", "not a valid host name"),
    ("http://-bad-.example.com/", "not a valid host name"),
    ("http://a..b.example/", "not a valid host name"),
    ("http://1.2.3.256/", "looks like an IPv4 address but is out of range"),
    ("http://08.0.0.1/", "looks like an IPv4 address but is not one"),
    ("http://1.2.3.4.5/", "looks like an IPv4 address but is not one"),
    ("http://0x/", "looks like an IPv4 address but is not one"),
    ("http://4294967296/", "out of range"),
    ("http://example.123/", "looks like an IPv4 address"),
])
def test_a_url_that_is_no_usable_http_url_is_refused(url: str, expected: str) -> None:
    # Refused whether or not the address check is on: these are not callback URLs at all.
    for on in (guard(), guard(allow_private_networks=True)):
        with pytest.raises(UnsafeUrl, match="callback URL") as caught:
            on.check(url)
        assert expected in str(caught.value)


def test_unsafe_url_is_a_value_error() -> None:
    assert issubclass(UnsafeUrl, ValueError)


# -- names and what they resolve to -------------------------------------------------------

def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    with pytest.raises(UnsafeUrl) as caught:
        guard({"intranet.example": ["10.1.2.3"]}).check("https://intranet.example/hook")
    assert str(caught.value).startswith(
        "callback URL 'https://intranet.example/hook' resolves to 10.1.2.3, a private address;")


def test_a_name_with_one_public_and_one_private_address_is_refused() -> None:
    names = {"mixed.example": [PUBLIC_V4, "127.0.0.1"]}
    with pytest.raises(UnsafeUrl, match="resolves to 127.0.0.1, a loopback address"):
        guard(names).check("https://mixed.example/")
    names = {"mixed.example": [PUBLIC_V6, "fd00::5"]}
    with pytest.raises(UnsafeUrl, match="resolves to fd00::5, a unique-local"):
        guard(names).check("https://mixed.example/")


def test_a_name_resolving_to_an_ipv4_mapped_private_address_is_refused() -> None:
    with pytest.raises(UnsafeUrl, match="IPv4-mapped form of 169.254.169.254"):
        guard({"meta.example": ["::ffff:169.254.169.254"]}).check("http://meta.example/")


def test_a_public_address_is_allowed_and_is_what_to_connect_to() -> None:
    names = {"hooks.example.com": [PUBLIC_V4, PUBLIC_V6, PUBLIC_V4]}
    target = guard(names).pin("https://hooks.example.com/cb?x=1")
    assert [str(a) for a in target.addresses] == [PUBLIC_V4, PUBLIC_V6]
    assert target.url.host == "hooks.example.com"
    assert target.url.port == 443
    guard().check(f"http://{PUBLIC_V4}/")
    guard().check(f"http://[{PUBLIC_V6}]:8080/")
    guard({"hooks.example.com": ["::ffff:" + PUBLIC_V4]}).check("http://hooks.example.com/")


def test_the_host_is_resolved_once_with_its_port_and_literals_never() -> None:
    calls: list[tuple[Any, ...]] = []

    def resolver(*args: Any) -> list[tuple[Any, ...]]:
        calls.append(args)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_V4, args[1]))]

    checker = NetworkGuard(resolver=resolver)
    checker.check("https://Hooks.Example.com:8443/cb")
    assert calls == [("hooks.example.com", 8443, 0, socket.SOCK_STREAM)]
    checker.check(f"http://{PUBLIC_V4}/")
    checker.check("http://0x5db8d70e/")  # 93.184.215.14, without DNS
    assert len(calls) == 1


def test_an_unresolvable_name_is_refused_with_the_reason() -> None:
    with pytest.raises(UnsafeUrl) as caught:
        guard().check("https://nowhere.invalid/hook")
    assert str(caught.value) == ("callback URL 'https://nowhere.invalid/hook': cannot resolve "
                                 "host 'nowhere.invalid': Name or service not known")


def test_a_name_resolving_to_nothing_is_refused() -> None:
    with pytest.raises(UnsafeUrl, match="resolves to no address"):
        guard({"empty.example": []}).check("http://empty.example/")


def test_a_resolver_answering_other_families_is_ignored_for_those() -> None:
    def resolver(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_UNIX, socket.SOCK_STREAM, 0, "", "/run/x.sock"),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.9", port))]

    with pytest.raises(UnsafeUrl, match="10.0.0.9, a private address"):
        NetworkGuard(resolver=resolver).check("http://odd.example/")


# -- the configuration's escape hatches ----------------------------------------------------

def test_allowed_networks_exempt_their_addresses_and_only_those() -> None:
    names = {"svc.internal": ["10.1.2.3"], "other.internal": ["10.1.3.3"]}
    checker = guard(names, allowed_networks=["10.1.2.0/24", "fd00:1::/32"])
    checker.check("http://svc.internal/")
    checker.check("http://10.1.2.200/")
    checker.check("http://[fd00:1::9]/")
    checker.check("http://[::ffff:10.1.2.4]/")  # mapped: judged as the IPv4 address
    with pytest.raises(UnsafeUrl, match="10.1.3.3, a private address"):
        checker.check("http://other.internal/")
    with pytest.raises(UnsafeUrl, match="a loopback address"):
        checker.check("http://127.0.0.1/")


def test_allowed_networks_exempt_a_numeric_encoded_host_as_the_address_it_denotes() -> None:
    guard(allowed_networks=["127.0.0.0/8"]).check("http://0x7f000001:8000/")


def test_allow_private_networks_turns_the_address_check_off() -> None:
    checker = NetworkGuard(allow_private_networks=True, resolver=no_dns)
    for url in ("http://10.0.0.1/", "http://localhost:8000/", "http://[::1]/",
                "http://169.254.169.254/", "http://0x7f000001/"):
        checker.check(url)
        assert checker.pin(url).addresses == ()  # sent as it is, nothing pinned


def test_the_guard_is_built_from_the_callbacks_settings() -> None:
    settings = CallbackSettings(allowed_networks=["192.168.7.0/24"])
    checker = NetworkGuard.from_settings(settings, resolver=static_resolver({}))
    checker.check("http://192.168.7.1/")
    with pytest.raises(UnsafeUrl):
        checker.check("http://192.168.8.1/")
    off = NetworkGuard.from_settings(CallbackSettings(allow_private_networks=True))
    off.check("http://192.168.8.1/")


# -- the parsed URL, for the sender --------------------------------------------------------

def test_the_parsed_url_rebuilds_for_the_checked_address() -> None:
    url = parse_callback_url("HTTPS://u:p%40ss@Hooks.Example.com:8443/a/b?c=d&e#frag")
    assert (url.scheme, url.host, url.port, url.userinfo) == (
        "https", "hooks.example.com", 8443, "u:p%40ss")
    assert url.host_header == "hooks.example.com:8443"
    assert url.url_for(ipaddress.ip_address(PUBLIC_V4)) == (
        f"https://u:p%40ss@{PUBLIC_V4}:8443/a/b?c=d&e")
    assert url.url_for(ipaddress.ip_address(PUBLIC_V6)) == (
        f"https://u:p%40ss@[{PUBLIC_V6}]:8443/a/b?c=d&e")
    plain = parse_callback_url("http://hooks.example.com")
    assert (plain.host_header, plain.target, plain.port) == ("hooks.example.com", "/", 80)
    v6 = parse_callback_url(f"http://[{PUBLIC_V6}]/")
    assert v6.host_header == f"[{PUBLIC_V6}]"
    assert v6.literal == ipaddress.ip_address(PUBLIC_V6)


def test_a_checked_ipv4_mapped_address_is_connected_to_as_ipv4() -> None:
    assert check_url("http://[::ffff:93.184.215.14]/", []) == (
        ipaddress.ip_address(PUBLIC_V4),)


# -- properties over whole ranges ----------------------------------------------------------

REFUSED_V4 = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
              "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4",
              "240.0.0.0/4"]
REFUSED_V6 = ["::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "::/96", "64:ff9b:1::/48",
              "2001:db8::/32"]


def addresses_in(networks: list[str]) -> st.SearchStrategy[Any]:
    def within(text: str) -> st.SearchStrategy[Any]:
        net = ipaddress.ip_network(text)
        return st.integers(0, net.num_addresses - 1).map(lambda i: net[i])

    return st.sampled_from(networks).flatmap(within)


@given(addresses_in(REFUSED_V4 + REFUSED_V6))
def test_every_address_in_a_non_public_range_is_refused(address: Any) -> None:
    assert refusal(address) is not None
    with pytest.raises(UnsafeUrl):
        check_url(f"http://{address}/" if address.version == 4 else f"http://[{address}]/", [])


@given(addresses_in(REFUSED_V4))
def test_the_mapped_6to4_and_nat64_forms_of_a_refused_ipv4_address_are_refused(
        v4: ipaddress.IPv4Address) -> None:
    n = int(v4)
    for form in (0xFFFF << 32 | n, 0x2002 << 112 | n << 80, 0x64FF9B << 96 | n):
        assert refusal(ipaddress.IPv6Address(form)) is not None


@given(st.integers(0, 2**32 - 1))
def test_an_ipv4_mapped_address_gets_the_verdict_of_its_ipv4_address(n: int) -> None:
    v4 = ipaddress.IPv4Address(n)
    mapped = ipaddress.IPv6Address(0xFFFF << 32 | n)
    assert (refusal(mapped) is None) == (refusal(v4) is None)


@given(addresses_in(REFUSED_V4 + REFUSED_V6))
def test_an_address_inside_allowed_networks_is_always_allowed(address: Any) -> None:
    prefix = 24 if address.version == 4 else 64
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert refusal(address, [network]) is None
    assert refusal(address, parse_networks(["0.0.0.0/0", "::/0"])) is None


@st.composite
def ipv4_spellings(draw: st.DrawFn) -> tuple[int, str]:
    """An IPv4 address and one of its inet_aton spellings (1 to 4 parts, mixed radixes)."""
    n = draw(st.integers(0, 2**32 - 1))
    count = draw(st.integers(1, 4))
    octets = n.to_bytes(4, "big")
    numbers = [*octets[:count - 1], int.from_bytes(octets[count - 1:], "big")]
    parts = []
    for number in numbers:
        radix = draw(st.sampled_from(["dec", "oct", "hex", "HEX"]))
        if radix == "dec":
            parts.append(str(number))
        elif radix == "oct":
            parts.append("0" + format(number, "o"))
        else:
            parts.append("0x" + format(number, "x" if radix == "hex" else "X"))
    return n, ".".join(parts)


@given(ipv4_spellings())
def test_numeric_hosts_denote_what_inet_aton_says(case: tuple[int, str]) -> None:
    n, spelling = case
    assert numeric_ipv4(spelling) == ipaddress.IPv4Address(n)
    assert socket.inet_aton(spelling) == n.to_bytes(4, "big")
    parsed = parse_callback_url(f"http://{spelling}:81/")
    assert parsed.literal == ipaddress.IPv4Address(n)


@given(st.text(alphabet="0123456789abcdefx.", min_size=1, max_size=24))
def test_a_host_inet_aton_reads_as_an_address_is_never_taken_for_a_name(host: str) -> None:
    try:
        expected = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return
    with contextlib.suppress(UnsafeUrl):  # refused outright is safe too
        assert numeric_ipv4(host) == expected


@pytest.mark.parametrize("host", ["example.com", "1.2.3.4.example.com", "0x7f.example",
                                  "hooks-1.example.co.uk", "localhost"])
def test_a_name_is_not_read_as_a_number(host: str) -> None:
    assert numeric_ipv4(host) is None
