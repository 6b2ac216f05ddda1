"""Output files kept as artifacts, on the real stack: Cordage-protocol runs of the sandbox's
``files`` workflow, each file's copy checked byte for byte against the provider's, and
still served by us after the provider's copy is gone."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.integration.conftest import Harness

pytestmark = pytest.mark.integration

COUNTS = (1, 2, 3)


def test_completed_jobs_keep_their_files_after_the_provider_drops_them(
        harness: Harness) -> None:
    auth = {"Authorization": f"Bearer {harness.token}"}
    with harness.receiver() as receiver:
        ids = [harness.client.submit("sandbox/files", {"count": count, "tag": f"files-{count}"},
                                     callback_url=receiver.url)["id"] for count in COUNTS]
        harness.wait_until(lambda: harness.all_terminal(ids), 60, "the jobs to end")
        harness.wait_until(lambda: set(ids) <= receiver.job_ids(), 30, "their callbacks")
        events = {e.body["data"]["id"]: e.body for e in receiver.events()}
    for job_id, count in zip(ids, COUNTS, strict=True):
        job = harness.client.get(job_id)
        assert job["status"] == "completed" and job["error"] is None, job
        assert [a["url"] for a in job["artifacts"]] == job["outputs"]
        assert len(job["artifacts"]) == count
        # The terminal event was sent once the files were kept, so it lists them.
        assert events[job_id]["type"] == "job.completed"
        assert events[job_id]["data"]["artifacts"] == job["artifacts"]
        for n, artifact in enumerate(job["artifacts"]):
            original = httpx.get(artifact["url"], timeout=10)
            assert original.status_code == 200
            expected = f"sandbox file {n + 1} of {count} from run {job['remote']['run_id']}\n"
            assert original.content == expected.encode()
            assert artifact["sha256"] == hashlib.sha256(original.content).hexdigest()
            assert artifact["size"] == len(original.content)
            assert artifact["content_type"] == original.headers["content-type"]

            harness.stack.sandbox.expire_file(artifact["url"].rsplit("/", 1)[1])
            assert httpx.get(artifact["url"], timeout=10).status_code == 404

            kept = httpx.get(harness.stack.api_url + artifact["download"], headers=auth,
                             timeout=10)
            assert kept.status_code == 200 and kept.content == original.content
            assert kept.headers["content-type"] == artifact["content_type"]
            assert kept.headers["etag"] == f'"{artifact["sha256"]}"'
