"""``orchestrator bench``: every performance promise measured against a baseline run in the
same invocation, on the same machine (see ``docs/benchmarks.md`` and QUALITY.md's P1..P8).

Scenarios live in ``orchestrator.bench.scenarios``; the baselines' tiny Celery app in
``orchestrator.bench.celery_app``; the table and JSON in ``orchestrator.bench.report``.
"""
