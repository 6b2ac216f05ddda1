"""``GET /v1/jobs/{id}/artifacts/{n}``: our kept copy of a job's ``n``-th output file.

Served from the artifact store as it was kept, streamed, with the content type the runtime
gave, its length, and its sha256 as the ``ETag`` and ``Digest`` (so a client can check what
it got against the job's ``artifacts[n].sha256``). It stays downloadable after the
runtime's own copy has expired.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Path
from fastapi.responses import Response, StreamingResponse

from orchestrator.api.deps import ContainerDep, TokenDep
from orchestrator.api.errors import ERROR_RESPONSES, ApiError
from orchestrator.api.jobs import JobId
from orchestrator.domain.records import Artifact

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")
FILE_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "description": "the file's bytes, with its content type",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}}


@router.get("/{job_id}/artifacts/{n}", response_class=StreamingResponse,
            responses=FILE_RESPONSE)
def download_artifact(
    job_id: JobId,
    n: Annotated[int, Path(ge=0, le=1_000_000)],
    _: TokenDep,
    container: ContainerDep,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """The kept copy of the job's `n`-th artifact (as listed in its `artifacts`)."""
    job = container.store.get_job(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job with id '{job_id}'")
    if n >= len(job.artifacts):
        raise ApiError(404, "not_found",
                       f"job {job_id} has no artifact {n} (it has {len(job.artifacts)})")
    artifact = job.artifacts[n]
    etag = f'"{artifact.sha256}"'
    if if_none_match and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers={"ETag": etag})
    try:
        chunks = container.artifacts.open(artifact.key)
    except FileNotFoundError:
        raise ApiError(404, "not_found", f"the kept copy of job {job_id}'s artifact {n} is "
                       "missing from the artifact store") from None
    return StreamingResponse(chunks, media_type=artifact.content_type or
                             "application/octet-stream", headers=_headers(job_id, n, artifact))


def _headers(job_id: str, n: int, artifact: Artifact) -> dict[str, str]:
    digest = base64.b64encode(bytes.fromhex(artifact.sha256)).decode()
    return {
        "Content-Length": str(artifact.size),
        "ETag": f'"{artifact.sha256}"',
        "Digest": f"sha-256={digest}",
        "Repr-Digest": f"sha-256=:{digest}:",
        "Content-Disposition": f'attachment; filename="{_filename(job_id, n, artifact.url)}"',
        # Served from our origin, so a browser must not guess it is a page to run.
        "X-Content-Type-Options": "nosniff",
    }


def _filename(job_id: str, n: int, url: str) -> str:
    """The runtime's file name where it is a plain one, else ``{job_id}-{n}``."""
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return name if _SAFE_NAME.match(name) else f"{job_id}-{n}"
