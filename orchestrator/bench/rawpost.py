"""The ``callbacks`` scenario's baseline: ``python -m orchestrator.bench.rawpost``.

Raw HTTP POSTs to a callback receiver, in a process of their own (the receiver runs in the
benchmark's process, so a loop there would share its GIL), the way one worker's loop would
send them: one shared ``httpx.Client``, one request at a time, nothing recorded anywhere.
Each request carries the given body with fresh Standard Webhooks headers (a new
``webhook-id`` each, signed with the receiver's secret: an HMAC, microseconds), so the
receiver does the same work for it as for one of our deliveries. Prints one JSON object:
``{"requests", "seconds", "rate", "non_2xx", "errors"}``; warm-up requests are not counted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import httpx

from orchestrator.domain.webhook import signature_headers


def raw_posts(url: str, secret: str, body: bytes, count: int, warmup: int = 20) -> dict[str, float]:
    non_2xx = errors = 0
    with httpx.Client(timeout=30.0) as http:
        for _ in range(warmup):
            headers = signature_headers([secret], f"msg_raw_{uuid.uuid4().hex}",
                                        int(time.time()), body)
            http.post(url, content=body, headers=headers)
        started = time.perf_counter()
        for _ in range(count):
            headers = signature_headers([secret], f"msg_raw_{uuid.uuid4().hex}",
                                        int(time.time()), body)
            try:
                response = http.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                errors += 1
                continue
            if not 200 <= response.status_code < 300:
                non_2xx += 1
        seconds = time.perf_counter() - started
    return {"requests": count, "seconds": seconds, "rate": count / seconds,
            "non_2xx": non_2xx, "errors": errors}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.bench.rawpost",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("secret_file", type=Path)
    parser.add_argument("body_file", type=Path)
    parser.add_argument("count", type=int)
    args = parser.parse_args(argv)
    secret = args.secret_file.read_text().strip()
    result = raw_posts(args.url, secret, args.body_file.read_bytes(), args.count)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
