"""``FsspecArtifactStore``: the ``ArtifactStore`` port on any fsspec filesystem.

``[artifacts] url`` names the root: ``file://./.orchestrator/artifacts`` (a relative path is
taken from the working directory) or an object store such as ``s3://bucket/prefix`` (its
fsspec package, ``s3fs`` and the like, must be installed). A job's ``n``-th output file is
kept under the key ``{job_id}/{n}``: nothing of the runtime's URL or file name ever becomes
part of a path.

``keep`` streams the file with the process's shared ``httpx.Client`` (no API key is sent:
output URLs are storage links, often on another host), hashing it as it is written to a
temporary name beside the final one, then moves it into place. A crash mid-download leaves
at most a stray ``.part`` file, never a half file under a key.

The URL comes from the run's outputs, which the user's own workflow writes, so it goes
through the callbacks' SSRF guard (``NetworkGuard``, ``[callbacks]`` settings): the host is
resolved once and the request connects to the checked address only (``send_pinned``).
Redirects are followed by hand, at most ``MAX_REDIRECTS``, each hop checked and pinned
afresh, so a public URL cannot send the worker to a private one. What the wire gives
maps to::

    connection failure, time-out, dropped body, 5xx, 408, 429, → Transient (retry_after from
    a host that does not resolve, a download over its time     Retry-After, if given)
    401, 403, 404, 410, any other 4xx, a file over the limit,   → Permanent
    a URL or redirect to a refused address, too many redirects

A few quick retries happen inside one ``keep`` (at most ``ATTEMPTS``, pausing briefly); a
longer wait is the caller's to schedule (the poll service polls again later), so no worker
sleeps on a runtime's ``Retry-After``. One ``keep``, tries, redirects and body together,
ends within ``max_download_s`` (give or take one read time-out of the client): a file not
kept by then is dropped (its temporary file removed) as ``Transient``, tried again in a
later round.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from orchestrator.adapters.http.guard import NetworkGuard, PinnedTarget, send_pinned
from orchestrator.domain.errors import Permanent, Transient, retry_after_seconds
from orchestrator.domain.netguard import ADVICE, UnsafeUrl, parse_callback_url
from orchestrator.domain.netguard import _shorten as _hide_password
from orchestrator.domain.records import Artifact

# The largest file kept for one output: a bigger one is not kept (Permanent), so one
# runaway output cannot fill the store or hold a worker for hours.
MAX_ARTIFACT_BYTES = 1 << 30
# One ``keep`` (its tries, redirects and body) may take this long in all; a file not kept by
# then is tried again in a later round. It runs inside a poll task, which Redis hands out
# again if it is not done within the visibility timeout (300 s, adapters/celery_app.py):
# the keeping service starts files only in the first ROUND_BUDGET_S (60 s) of a round, so
# a round ends within 60 + 120 s, plus one read time-out of the client (10 s): about 190 s.
MAX_DOWNLOAD_S = 120.0
# The most redirects followed for one file, each checked by the guard.
MAX_REDIRECTS = 5
# What a refused URL's message advises (the guard's own advice speaks of callbacks).
FETCH_ADVICE = ("output files are fetched only from public addresses (set "
                "[callbacks].allow_private_networks or add the subnet to "
                "[callbacks].allowed_networks to allow it)")
CHUNK_BYTES = 1 << 20
# Tries within one ``keep`` and the pauses between them; a Retry-After longer than
# MAX_INLINE_WAIT_S is left to the caller instead of being slept on.
ATTEMPTS = 3
PAUSES_S = (0.2, 1.0)
MAX_INLINE_WAIT_S = 2.0
MAX_CONTENT_TYPE = 255
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}/[0-9]{1,9}$")
GONE = frozenset({401, 403, 404, 410})


def local_root(url: str) -> str:
    """``url`` with a ``file://`` (or bare) relative path made absolute from the working
    directory; any other URL as it is."""
    if "://" not in url:
        return "file://" + str(Path(url).expanduser().resolve())
    if url.startswith("file://"):
        return "file://" + str(Path(url.removeprefix("file://")).expanduser().resolve())
    return url


def shown(url: str) -> str:
    """A URL fit for messages and logs: without its query string (where presigned links
    carry their credentials) or fragment, with any password hidden as ``CallbackUrl.shown``
    hides it, at most 200 characters."""
    try:
        parts = urlsplit(url)
        bare = urlunsplit(parts._replace(query="", fragment="")) if parts.netloc else url
    except ValueError:  # a malformed authority ("http://[::1"): cut at the query by hand
        bare = url.split("?", 1)[0].split("#", 1)[0]
    return _hide_password(bare)


class FsspecArtifactStore:
    def __init__(self, url: str, client: httpx.Client, *, guard: NetworkGuard,
                 max_bytes: int = MAX_ARTIFACT_BYTES, max_download_s: float = MAX_DOWNLOAD_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``guard``: the SSRF guard every request (and redirect) goes through."""
        self.url = local_root(url)
        try:
            fs, root = url_to_fs(self.url)
        except ImportError as exc:
            raise ValueError(f"[artifacts] url {url!r} needs a package that is not "
                             f"installed: {exc}") from None
        self.fs: AbstractFileSystem = fs
        self.root = str(root).rstrip("/")
        self._client = client
        self._guard = guard
        self.max_bytes = max_bytes
        self.max_download_s = max_download_s
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"FsspecArtifactStore({self.url!r})"

    def path(self, key: str) -> str:
        """Where the file of ``key`` is in the filesystem."""
        if not _KEY.match(key):
            raise ValueError(f"not an artifact key: {key!r}")
        return f"{self.root}/{key}"

    # ArtifactStore ------------------------------------------------------------------------

    def keep(self, job_id: str, n: int, url: str) -> Artifact:
        if not _JOB_ID.match(job_id) or n < 0:
            raise ValueError(f"no artifact key for job {job_id!r}, file {n}")
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise Permanent(f"output file {n} is not an http(s) URL: {shown(url)}",
                            code="artifact_not_kept")
        give_up_at = time.monotonic() + self.max_download_s
        for attempt in range(ATTEMPTS):
            try:
                return self._download(job_id, n, url, give_up_at)
            except Transient as error:
                wait = max(PAUSES_S[min(attempt, len(PAUSES_S) - 1)], error.retry_after or 0.0)
                if (attempt == ATTEMPTS - 1 or wait > MAX_INLINE_WAIT_S
                        or time.monotonic() + wait >= give_up_at):
                    raise
                self._sleep(wait)
        raise AssertionError("unreachable")

    def open(self, key: str) -> Iterator[bytes]:
        handle = self.fs.open(self.path(key), "rb")  # FileNotFoundError now, not mid-stream
        return _chunks(handle)

    # downloading ---------------------------------------------------------------------------

    def _download(self, job_id: str, n: int, url: str, give_up_at: float) -> Artifact:
        key = f"{job_id}/{n}"
        final = self.path(key)
        with _wire_errors(url), self._get(n, url, give_up_at) as response:
            _check(response, url)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large(n, url)
            content_type = response.headers.get("content-type")
            digest, size = self._write(final, n, url, response, give_up_at)
        return Artifact(url=url, key=key, sha256=digest, size=size,
                        content_type=content_type[:MAX_CONTENT_TYPE] if content_type else None)

    @contextmanager
    def _get(self, n: int, url: str, give_up_at: float) -> Iterator[httpx.Response]:
        """The streamed answer to GET ``url``, redirects followed by hand: each hop's URL
        (a relative ``Location`` resolved against the URL it came from) is checked by the
        guard and the request connects to the address checked, never to a second DNS
        answer. Closed on leaving."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            target = self._pin(url, current)
            response = send_pinned(target, {}, lambda to, headers, extensions: self._send(
                n, url, to, headers, extensions, give_up_at))
            if not response.is_redirect:
                break
            response.close()
            current = _next_hop(url, current, response.headers["location"])
        else:
            raise Permanent(f"fetching {shown(url)} redirected more than {MAX_REDIRECTS} "
                            "times", code="artifact_not_kept")
        try:
            yield response
        finally:
            response.close()

    def _pin(self, url: str, current: str) -> PinnedTarget:
        """``current`` (``url`` or a URL it redirected to) checked and resolved once: a
        URL the guard refuses is Permanent; a host that does not resolve, Transient."""
        try:
            parse_callback_url(current)
        except UnsafeUrl as refused:
            raise Permanent(_refused(url, current, refused), code="artifact_not_kept") from None
        try:
            return self._guard.pin(current)
        except UnsafeUrl as refused:
            if f"; {ADVICE}" in str(refused):  # an address that may not be reached
                raise Permanent(_refused(url, current, refused),
                                code="artifact_not_kept") from None
            raise Transient(_refused(url, current, refused), request_sent=False) from None

    def _send(self, n: int, url: str, to: str, headers: dict[str, str],
              extensions: dict[str, str], give_up_at: float) -> httpx.Response:
        if time.monotonic() >= give_up_at:
            raise self._too_slow(n, url)
        request = self._client.build_request("GET", to, headers=headers,
                                             extensions=extensions or None)
        return self._client.send(request, stream=True, follow_redirects=False)

    def _write(self, final: str, n: int, url: str, response: httpx.Response,
               give_up_at: float) -> tuple[str, int]:
        """Stream the body to a temporary name, then move it to ``final``."""
        parent = final.rsplit("/", 1)[0]
        temporary = f"{parent}/.{final.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.part"
        self.fs.makedirs(parent, exist_ok=True)
        sha, size = hashlib.sha256(), 0
        try:
            with self.fs.open(temporary, "wb") as out:
                # Each piece as it comes off the wire (not gathered into CHUNK_BYTES), so
                # the time limit is looked at after every read, a trickle included.
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large(n, url)
                    if time.monotonic() > give_up_at:
                        raise self._too_slow(n, url)
                    sha.update(chunk)
                    out.write(chunk)
                _sync(out)
            self.fs.mv(temporary, final)
        except OSError as exc:  # our store's trouble (a full disk, say): may pass
            _remove_quietly(self.fs, temporary)
            raise Transient(f"the artifact store could not keep output file {n}: "
                            f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            _remove_quietly(self.fs, temporary)
            raise
        return sha.hexdigest(), size

    def _too_slow(self, n: int, url: str) -> Transient:
        return Transient(f"output file {n} ({shown(url)}) took more than "
                         f"{self.max_download_s:g}s to download")

    def _too_large(self, n: int, url: str) -> Permanent:
        return Permanent(f"output file {n} ({shown(url)}) is larger than {_size(self.max_bytes)}, "
                         "the most kept for one file", code="artifact_too_large")


def _check(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    what = f"fetching {shown(url)} answered HTTP {status}"
    if status in (408, 429) or status >= 500:
        wait = retry_after_seconds(response.headers, None, time.time())
        raise Transient(what, retry_after=wait)
    if status in GONE:
        raise Permanent(f"{what}: the file is gone or not ours to read",
                        code="artifact_not_kept")
    raise Permanent(what, code="artifact_not_kept")


def _next_hop(url: str, current: str, location: str) -> str:
    """Where a redirect from ``current`` goes: ``location`` resolved against it."""
    try:
        return urljoin(current, location)
    except ValueError:  # a malformed authority ("http://[::1")
        raise Permanent(f"fetching {shown(url)} redirected to a URL that is not valid",
                        code="artifact_not_kept") from None


def _refused(url: str, current: str, refused: UnsafeUrl) -> str:
    """The guard's reason for refusing ``current``, told of an output file URL (and
    without the query string the guard's message keeps)."""
    text = str(refused)
    lead = f"callback URL '{_hide_password(current)}'"
    rest = text[len(lead):] if text.startswith(lead) else f": {text}"
    rest = rest.replace(f"; {ADVICE}", f"; {FETCH_ADVICE}")
    if current == url:
        return f"output file URL '{shown(url)}'{rest}"
    return f"output file URL '{shown(url)}' redirected to '{shown(current)}', and that URL{rest}"


@contextmanager
def _wire_errors(url: str) -> Iterator[None]:
    try:
        yield
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        raise Permanent(f"cannot fetch {shown(url)}: {type(exc).__name__}",
                        code="artifact_not_kept") from None
    except httpx.TransportError as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise Transient(f"fetching {shown(url)} failed ({detail})",
                        request_sent=not isinstance(exc, httpx.ConnectError)) from None


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _sync(out: Any) -> None:
    """Flush a local file to disk before it is renamed into place (a power cut must not
    leave an empty file under the final name); object stores commit on close."""
    try:
        out.flush()
        os.fsync(out.fileno())
    except (AttributeError, OSError, ValueError):
        pass  # not a local file: nothing to sync


def _remove_quietly(fs: AbstractFileSystem, path: str) -> None:
    with suppress(OSError, ValueError):
        fs.rm_file(path)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"
