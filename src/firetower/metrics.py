"""Process-wide Prometheus instruments, served at /metrics.

With ``serve --processes N`` every process counts into files of one directory
(prometheus-client's multiprocess mode, set up by ``serve`` through
``PROMETHEUS_MULTIPROC_DIR`` before the processes start) and /metrics adds them up, so a
scrape sees the whole server whichever process answers it. Only counters and histograms
are kept here: they add up across processes without choices to make.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "firetower_http_requests_total",
    "HTTP requests handled, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "firetower_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["route"],
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "firetower_jobs_finished_total",
    "Job runs by kind and outcome (succeeded, retried, dead).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "firetower_job_duration_seconds", "Time one job run took.", ["kind"], registry=REGISTRY
)
GROUP_COMMIT_OPERATIONS = Histogram(
    "firetower_group_commit_operations",
    "Operations of concurrent requests committed together in one transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
GROUP_COMMIT_RETRIED = Counter(
    "firetower_group_commit_retried_total",
    "Groups whose shared transaction failed, so each operation ran again alone.",
    registry=REGISTRY,
)
ALERT_KEY_FOLD_SECONDS = Histogram(
    "firetower_alert_key_fold_seconds",
    "Time a fold of the alert keys took on SQLite, with its merge (its count is the folds); "
    "it grows with the alerts stored up to about half a million, then slowly.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The text /metrics serves: this process's instruments, or every process's summed."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        every_process = CollectorRegistry()
        MultiProcessCollector(every_process)
        return generate_latest(every_process)
    return generate_latest(REGISTRY)
