"""``FsspecArtifactStore``: the ``ArtifactStore`` port on any fsspec filesystem.

``[artifacts] url`` names the root: ``file://./.orchestrator/artifacts`` (a relative path is
taken from the working directory) or an object store such as ``s3://bucket/prefix`` (its
fsspec package, ``s3fs`` and the like, must be installed). A job's ``n``-th output file is
kept under the key ``{job_id}/{n}``: nothing of the runtime's URL or file name ever becomes
part of a path.

``keep`` streams the file with the process's shared ``httpx.Client`` (no API key is sent:
output URLs are storage links, often on another host), hashing it as it is written to a
temporary name beside the final one, then moves it into place. A crash mid-download leaves
at most a stray ``.part`` file, never a half file under a key. What the wire gives maps to::

    connection failure, time-out, dropped body, 5xx, 408, 429  → Transient (retry_after from
                                                                 Retry-After, if given)
    401, 403, 404, 410, any other 4xx, a file over the limit   → Permanent

A few quick retries happen inside one ``keep`` (at most ``ATTEMPTS``, pausing briefly); a
longer wait is the caller's to schedule (the poll service polls again later), so no worker
sleeps on a runtime's ``Retry-After``.
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
from urllib.parse import urlsplit

import httpx
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from orchestrator.domain.errors import Permanent, Transient, retry_after_seconds
from orchestrator.domain.records import Artifact

# The largest file kept for one output: a bigger one is not kept (Permanent), so one
# runaway output cannot fill the store or hold a worker for hours.
MAX_ARTIFACT_BYTES = 1 << 30
# One download may take this long in all; a trickle slower than that is tried again later.
MAX_DOWNLOAD_S = 600.0
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
    """A URL fit for messages and logs: without its query string, where presigned links
    carry their credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else url[:200]


class FsspecArtifactStore:
    def __init__(self, url: str, client: httpx.Client, *,
                 max_bytes: int = MAX_ARTIFACT_BYTES, max_download_s: float = MAX_DOWNLOAD_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = local_root(url)
        try:
            fs, root = url_to_fs(self.url)
        except ImportError as exc:
            raise ValueError(f"[artifacts] url {url!r} needs a package that is not "
                             f"installed: {exc}") from None
        self.fs: AbstractFileSystem = fs
        self.root = str(root).rstrip("/")
        self._client = client
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
        for attempt in range(ATTEMPTS):
            try:
                return self._download(job_id, n, url)
            except Transient as error:
                wait = max(PAUSES_S[min(attempt, len(PAUSES_S) - 1)], error.retry_after or 0.0)
                if attempt == ATTEMPTS - 1 or wait > MAX_INLINE_WAIT_S:
                    raise
                self._sleep(wait)
        raise AssertionError("unreachable")

    def open(self, key: str) -> Iterator[bytes]:
        handle = self.fs.open(self.path(key), "rb")  # FileNotFoundError now, not mid-stream
        return _chunks(handle)

    # downloading ---------------------------------------------------------------------------

    def _download(self, job_id: str, n: int, url: str) -> Artifact:
        key = f"{job_id}/{n}"
        final = self.path(key)
        with _wire_errors(url), self._client.stream(
                "GET", url, follow_redirects=True) as response:
            _check(response, url)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large(n, url)
            content_type = response.headers.get("content-type")
            digest, size = self._write(final, n, url, response)
        return Artifact(url=url, key=key, sha256=digest, size=size,
                        content_type=content_type[:MAX_CONTENT_TYPE] if content_type else None)

    def _write(self, final: str, n: int, url: str, response: httpx.Response) -> tuple[str, int]:
        """Stream the body to a temporary name, then move it to ``final``."""
        parent = final.rsplit("/", 1)[0]
        temporary = f"{parent}/.{final.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.part"
        self.fs.makedirs(parent, exist_ok=True)
        sha, size = hashlib.sha256(), 0
        give_up_at = time.monotonic() + self.max_download_s
        try:
            with self.fs.open(temporary, "wb") as out:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large(n, url)
                    if time.monotonic() > give_up_at:
                        raise Transient(f"output file {n} ({shown(url)}) took more than "
                                        f"{self.max_download_s:g}s to download")
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


@contextmanager
def _wire_errors(url: str) -> Iterator[None]:
    try:
        yield
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        raise Permanent(f"cannot fetch {shown(url)}: {type(exc).__name__}",
                        code="artifact_not_kept") from None
    except httpx.TooManyRedirects:
        raise Permanent(f"fetching {shown(url)} redirected too often",
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
