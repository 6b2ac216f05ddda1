"""The guarded ``HttpCallbackSender`` against real local HTTP(S) servers: it connects to the
address that was checked, keeps the original ``Host`` (and SNI), and follows no redirect."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.adapters.http.callbacks import HttpCallbackSender
from orchestrator.adapters.http.client import make_http_client
from orchestrator.adapters.http.guard import NetworkGuard, static_resolver

HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}
BODY = b'{"type": "job.completed"}'


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    host: str
    port: int
    requests: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self._answer()

        def do_GET(self) -> None:  # noqa: N802
            self._answer()

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            receiver.requests.append(Seen(self.command, self.path, dict(self.headers.items()),
                                          self.rfile.read(length)))
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{receiver.port}/target")
            else:
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[..., Receiver]]:
    """Start a real HTTP server on ``host`` (and ``port``; 0 picks one), TLS if given."""
    servers: list[ThreadingHTTPServer] = []

    def start(host: str = "127.0.0.1", port: int = 0,
              tls: ssl.SSLContext | None = None) -> Receiver:
        receiver = Receiver(host, port)
        server = ThreadingHTTPServer((host, port), _handler(receiver))
        server.daemon_threads = True
        receiver.port = server.server_address[1]
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: receiver.sni.append(name)
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        return receiver

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_http_client(timeout_s=5) as http:
        yield http


def guarded(client: httpx.Client, resolver: Any, **kwargs: Any) -> HttpCallbackSender:
    return HttpCallbackSender(client, 5.0, NetworkGuard(resolver=resolver, **kwargs))


RECEIVER_TEST = static_resolver({"receiver.test": ["127.0.0.1"]})


def test_the_post_reaches_the_checked_address_with_the_original_host_header(
        serve: Callable[..., Receiver], client: httpx.Client) -> None:
    receiver = serve()
    sender = guarded(client, RECEIVER_TEST, allowed_networks=["127.0.0.0/8"])
    result = sender.send(f"http://receiver.test:{receiver.port}/hook?x=1", HEADERS, BODY)
    assert (result.status_code, result.error) == (204, None)
    [seen] = receiver.requests
    assert (seen.method, seen.path, seen.body) == ("POST", "/hook?x=1", BODY)
    assert seen.headers["Host"] == f"receiver.test:{receiver.port}"
    assert seen.headers["webhook-id"] == "msg_1"


def test_a_redirect_is_a_failed_attempt_and_its_target_is_never_requested(
        serve: Callable[..., Receiver], client: httpx.Client) -> None:
    receiver = serve()
    sender = guarded(client, RECEIVER_TEST, allowed_networks=["127.0.0.0/8"])
    unguarded = HttpCallbackSender(client, 5.0)
    for result in (sender.send(f"http://receiver.test:{receiver.port}/redirect", HEADERS, BODY),
                   unguarded.send(f"http://127.0.0.1:{receiver.port}/redirect", HEADERS, BODY)):
        assert result.status_code == 302
        assert result.error is not None and result.error.startswith("HTTP 302")
    assert receiver.paths() == ["/redirect", "/redirect"]


def test_without_the_allowance_the_send_is_refused_and_nothing_arrives(
        serve: Callable[..., Receiver], client: httpx.Client) -> None:
    receiver = serve()
    url = f"http://receiver.test:{receiver.port}/hook"
    for sender in (guarded(client, RECEIVER_TEST),
                   guarded(client, RECEIVER_TEST, allowed_networks=["10.0.0.0/8"])):
        result = sender.send(url, HEADERS, BODY)
        assert result.status_code is None
        assert result.error == (
            f"refused: callback URL '{url}' resolves to 127.0.0.1, a loopback address; "
            "callbacks may only go to public addresses (set [callbacks].allow_private_networks "
            "or add the subnet to allowed_networks to allow it)")
    for literal in (f"http://127.0.0.1:{receiver.port}/", f"http://0x7f000001:{receiver.port}/",
                    f"http://[::ffff:127.0.0.1]:{receiver.port}/", "ftp://receiver.test/"):
        result = guarded(client, RECEIVER_TEST).send(literal, HEADERS, BODY)
        assert result.error is not None and result.error.startswith("refused: ")
    assert receiver.requests == []


def test_a_numeric_encoded_allowed_host_is_sent_to_the_address_it_denotes(
        serve: Callable[..., Receiver], client: httpx.Client) -> None:
    receiver = serve()
    sender = guarded(client, static_resolver({}), allowed_networks=["127.0.0.0/8"])
    assert sender.send(f"http://0x7f000001:{receiver.port}/hook", HEADERS, BODY).error is None
    assert sender.send(f"http://[::ffff:127.0.0.1]:{receiver.port}/h", HEADERS, BODY).error is None
    assert receiver.paths() == ["/hook", "/h"]
    assert receiver.requests[0].headers["Host"] == f"127.0.0.1:{receiver.port}"


def test_dns_rebinding_cannot_steer_the_connection_to_an_unchecked_address(
        serve: Callable[..., Receiver], client: httpx.Client,
        monkeypatch: pytest.MonkeyPatch) -> None:
    checked = serve("127.0.0.1")
    try:
        evil = serve("127.0.0.2", checked.port)
    except OSError:
        pytest.skip("cannot listen on 127.0.0.2 here")
    answers: list[str] = []

    def rebinding(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        # The check gets the allowed address; any later question gets the other one.
        address = "127.0.0.1" if len(answers) % 2 == 0 else "127.0.0.2"
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    system = socket.getaddrinfo

    def system_rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        # Should anything (httpx, httpcore) look the name up again, it is told 127.0.0.2.
        if host in ("receiver.test", b"receiver.test"):
            return system("127.0.0.2", *args, **kwargs)
        return system(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", system_rebinding)
    url = f"http://receiver.test:{checked.port}/hook"
    wide = guarded(client, rebinding, allowed_networks=["127.0.0.0/8"])
    for _ in range(3):
        assert wide.send(url, HEADERS, BODY).status_code == 204
        answers.clear()  # each send's own check sees the first answer again
    assert len(checked.requests) == 3
    assert evil.requests == []

    narrow = guarded(client, rebinding, allowed_networks=["127.0.0.1/32"])
    assert narrow.send(url, HEADERS, BODY).status_code == 204  # checked 127.0.0.1, sent there
    result = narrow.send(url, HEADERS, BODY)  # this check is told 127.0.0.2: refused
    assert result.error is not None and "resolves to 127.0.0.2, a loopback" in result.error
    assert answers == ["127.0.0.1", "127.0.0.2"]  # one lookup per send, no second one
    assert len(checked.requests) == 4
    assert evil.requests == []


def test_an_unconnectable_checked_address_gives_way_to_the_next_one(
        serve: Callable[..., Receiver], client: httpx.Client) -> None:
    receiver = serve()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
    resolver = static_resolver({"receiver.test": ["127.0.0.3", "127.0.0.1"]})
    sender = guarded(client, resolver, allowed_networks=["127.0.0.0/8"])
    try:
        url = f"http://receiver.test:{receiver.port}/hook"
        assert sender.send(url, HEADERS, BODY).error is None
        lone = guarded(client, static_resolver({"receiver.test": ["127.0.0.1"]}),
                       allowed_networks=["127.0.0.0/8"])
        port = closed.getsockname()[1]
        result = lone.send(f"http://receiver.test:{port}/hook", HEADERS, BODY)
    finally:
        closed.close()
    assert receiver.paths() == ["/hook"]
    assert result.status_code is None
    assert result.error is not None and result.error.startswith("ConnectError")


def _tls_contexts(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for ``name`` (no IP address in it),
    and a client context that trusts just that certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


def test_https_uses_the_host_name_for_sni_and_certificate_checks(
        serve: Callable[..., Receiver], tmp_path: Path) -> None:
    server_tls, client_tls = _tls_contexts(tmp_path, "receiver.test")
    receiver = serve(tls=server_tls)
    resolver = static_resolver({"receiver.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    with httpx.Client(verify=client_tls) as http:
        sender = HttpCallbackSender(http, 5.0, NetworkGuard(
            resolver=resolver, allowed_networks=["127.0.0.0/8"]))
        result = sender.send(f"https://receiver.test:{receiver.port}/hook", HEADERS, BODY)
        assert (result.status_code, result.error) == (204, None)
        # The certificate names receiver.test, not 127.0.0.1: other.test must fail its check.
        wrong = sender.send(f"https://other.test:{receiver.port}/hook", HEADERS, BODY)
    assert wrong.status_code is None
    assert wrong.error is not None and "CERTIFICATE_VERIFY_FAILED" in wrong.error
    assert receiver.sni[0] == "receiver.test"
    [seen] = receiver.requests
    assert seen.headers["Host"] == f"receiver.test:{receiver.port}"
    assert seen.headers["Connection"] == "close"


def test_the_request_goes_to_the_ip_literal_with_host_and_sni() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    resolver = static_resolver({"hooks.example.com": ["2606:4700:4700::1111", "93.184.215.14"]})
    with make_http_client(transport=httpx.MockTransport(handler)) as http:
        sender = HttpCallbackSender(http, 5.0, NetworkGuard(resolver=resolver))
        headers = {**HEADERS, "host": "evil.example"}
        assert sender.send("https://hooks.example.com/cb?a=1", headers, BODY).status_code == 200
        assert sender.send("http://hooks.example.com:8080/cb", HEADERS, BODY).status_code == 200
    https, http_ = sent
    assert str(https.url) == "https://[2606:4700:4700::1111]/cb?a=1"
    assert https.headers.get_list("host") == ["hooks.example.com"]
    assert https.extensions["sni_hostname"] == "hooks.example.com"
    assert https.content == BODY
    assert str(http_.url) == "http://[2606:4700:4700::1111]:8080/cb"
    assert http_.headers["host"] == "hooks.example.com:8080"
    assert "sni_hostname" not in http_.extensions
    # A TLS connection is verified for one name but pooled by IP: it is not kept for another.
    assert (https.headers["connection"], http_.headers["connection"]) == ("close", "keep-alive")


def test_without_a_guard_the_sender_sends_to_any_url() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(204)

    with make_http_client(transport=httpx.MockTransport(handler)) as http:
        result = HttpCallbackSender(http, 5.0).send("http://10.0.0.1/hook", HEADERS, BODY)
    assert result.status_code == 204
    assert sent == ["http://10.0.0.1/hook"]



def test_a_round_never_raises_for_one_bad_send_and_ends_in_time() -> None:
    import threading

    from orchestrator.adapters.http.callbacks import HttpCallbackSender
    from orchestrator.ports import Outgoing

    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path == "/slow":
                release.wait(10)
            if self.path == "/odd":
                self.send_response(503)
                self.send_header("Retry-After", "Mon, 01 Jan 99999999999 00:00:00 GMT")
            else:
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    client = httpx.Client()
    sender = HttpCallbackSender(client, 5.0)
    try:
        urls = [f"{base}/ok", f"{base}/odd", f"{base}/slow", "http://[::1"]
        results = sender.send_many([Outgoing(url, {}, b"{}") for url in urls], within_s=0.5)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        client.close()
    ok, odd, slow, bad = results
    assert ok.status_code == 204
    assert odd.status_code == 503 and odd.retry_after is None  # an absurd date: no hint
    assert slow.status_code is None and "no answer within 0.5 s" in (slow.error or "")
    assert bad.status_code is None and bad.error
