"""What both drivers do alike around httpx: read an answer as a ``Reply`` or an error, say
that the API cannot be reached, read a file, stream a body while reporting its progress."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import httpx

from orchestrator.client.errors import ClientError, Unreachable
from orchestrator.client.steps import Reply, UploadProgress


def decode(response: httpx.Response) -> Reply:
    """A read answer as a ``Reply``; an error status as ClientError."""
    if response.status_code >= 400:
        raise api_error(response)
    if response.status_code == 204 or not response.content:
        return Reply(response.status_code, None)
    try:
        return Reply(response.status_code, response.json())
    except ValueError:
        raise ClientError(f"HTTP {response.status_code} from {response.url} is not JSON: "
                          f"{response.text[:200]}", status=response.status_code,
                          code="invalid_response") from None


def api_error(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        return ClientError(str(error.get("message")), status=response.status_code,
                           code=str(error.get("code")))
    return ClientError(f"HTTP {response.status_code}: {response.text[:200]}",
                       status=response.status_code)


def unreachable(url: str, exc: Exception) -> Unreachable:
    return Unreachable(
        f"cannot reach the API at {url} ({type(exc).__name__}); is 'orchestrator api' (or "
        "'orchestrator dev') running? Set ORCHESTRATOR_URL to its address", code="unreachable")


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}",
                          code="file_unreadable") from None


def reporting(body: bytes, on_upload: UploadProgress) -> Iterator[bytes]:
    step = 256 * 1024
    for start in range(0, len(body), step):
        yield body[start:start + step]
        on_upload(min(start + step, len(body)), len(body))


async def areporting(body: bytes, on_upload: UploadProgress) -> AsyncIterator[bytes]:
    for chunk in reporting(body, on_upload):
        yield chunk
