"""``orchestrator bench``: every performance promise measured against a baseline run in the
same invocation, on the same machine (see ``docs/benchmarks.md`` and QUALITY.md's P1..P8).

Scenarios live in ``orchestrator.bench.scenarios`` (``callbacks``, P7, in
``orchestrator.bench.fanout``); the baselines' tiny Celery app in
``orchestrator.bench.celery_app`` and the raw-POST loop in ``orchestrator.bench.rawpost``; the
table and JSON in ``orchestrator.bench.report``.
"""
