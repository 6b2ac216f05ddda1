"""``POST /v1/files``: store an input file on a provider, for a job's inputs to point to.

The request body is the file's bytes, at most ``MAX_FILE_BYTES`` (50 MiB). That limit is
this route's own: the app's general body limit is sized for JSON job inputs and exempts this
path. The answer's ``url`` is what the runtime hands back (CodeWords' ``download_uri``), to
be put in the inputs of a job on the same provider.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from orchestrator.api.deps import ContainerDep, TokenDep
from orchestrator.api.errors import ERROR_RESPONSES, ApiError, ErrorBody, error_response
from orchestrator.bootstrap import Container
from orchestrator.domain.errors import ProviderError, RateLimited
from orchestrator.ports import FileUploads

# Large enough for the spreadsheets and documents workflows take as inputs, small enough
# that one upload, held in memory while it is passed on, cannot exhaust the API process.
MAX_FILE_BYTES = 50 * 1024 * 1024
_BAD_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\]")

router = APIRouter(prefix="/v1/files", tags=["files"], responses=ERROR_RESPONSES)


class FileOut(BaseModel):
    provider: str
    filename: str
    size: int
    url: str


@router.post(
    "",
    status_code=201,
    response_model=FileOut,
    responses={429: {"model": ErrorBody, "description": "the provider asked us to wait"},
               502: {"model": ErrorBody, "description": "the provider refused or failed"}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def upload_file(
    request: Request,
    _: TokenDep,
    container: ContainerDep,
    provider: Annotated[str, Query(min_length=1, max_length=200)],
    filename: Annotated[str, Query(min_length=1, max_length=255)],
) -> dict[str, Any] | JSONResponse:
    """Upload the request body as a file to `provider`; returns the `url` to pass in a job's
    inputs. At most 50 MiB; only providers that take files (CodeWords) accept it."""
    if _BAD_FILENAME.search(filename) or filename in (".", ".."):
        raise ApiError(422, "invalid_filename",
                       "filename must be a plain file name, without slashes or control "
                       "characters")
    uploads = _uploader(container, provider)
    content = await _read_body(request)
    content_type = request.headers.get("content-type")
    try:
        url = await run_in_threadpool(uploads.upload, filename, content, content_type)
    except RateLimited as error:
        response = error_response(429, "rate_limited", error.message)
        response.headers["Retry-After"] = str(math.ceil(error.retry_after))
        return response
    except ProviderError as error:  # its message is already free of the API key
        raise ApiError(502, "provider_error", error.message) from None
    return {"provider": provider, "filename": filename, "size": len(content), "url": url}


def _uploader(container: Container, name: str) -> FileUploads:
    configured = list(container.providers.names())
    if name not in configured:
        raise ApiError(422, "unknown_provider",
                       f"provider '{name}' is not configured (configured providers: "
                       f"{', '.join(configured) or 'none'})")
    provider = container.providers.get(name)
    if not isinstance(provider, FileUploads):
        raise ApiError(422, "uploads_not_supported",
                       f"provider '{name}' takes no file uploads; pass the file's URL in the "
                       "inputs instead")
    return provider


async def _read_body(request: Request) -> bytes:
    """The body, refused with 413 as soon as it is known to be too large."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FILE_BYTES:
        raise _too_large(declared)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise _too_large(f"over {MAX_FILE_BYTES}")
        chunks.append(chunk)
    if size == 0:
        raise ApiError(422, "empty_file", "the request body is empty: send the file's bytes")
    return b"".join(chunks)


def _too_large(size: str) -> ApiError:
    return ApiError(413, "too_large",
                    f"the file is {size} bytes; the limit is {MAX_FILE_BYTES} (50 MiB)")
