"""Prometheus metrics: names by convention, labels of low cardinality only.

Labels are route templates, methods, status classes, result codes, S3 operations
and the storage backend name — never project or artifact ids. With
``serve --workers N`` each worker writes to ``PROMETHEUS_MULTIPROC_DIR`` (set by
the supervisor before the workers start) and a scrape of any worker aggregates
all of them.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from gateway import __version__

PREFIX = "artifact_gateway"
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_UPLOAD_SECONDS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800)
_SIZES = tuple(float(4**n) for n in range(5, 17))  # 1 KiB … 4 GiB

HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests_total",
    "HTTP requests answered, by route template, method and status class.",
    ["route", "method", "status_class"],
)
HTTP_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time to answer an HTTP request (for streamed bodies: until the last byte).",
    ["route", "method"],
    buckets=_LATENCY,
)
UPLOADS_IN_FLIGHT = Gauge(
    f"{PREFIX}_uploads_in_flight",
    "Publishes currently streaming a body.",
    multiprocess_mode="livesum",
)
UPLOAD_RECEIVED_BYTES = Counter(
    f"{PREFIX}_upload_received_bytes_total", "File bytes received by publishes, stored or not."
)
UPLOAD_STORED_BYTES = Counter(
    f"{PREFIX}_upload_stored_bytes_total", "File bytes of artifacts that were published."
)
PUBLISHES = Counter(
    f"{PREFIX}_publishes_total",
    "Publish outcomes: created, replayed, or the problem code.",
    ["result"],
)
UPLOAD_DURATION = Histogram(
    f"{PREFIX}_upload_duration_seconds",
    "Duration of successful publishes, from first byte to commit.",
    buckets=_UPLOAD_SECONDS,
)
UPLOAD_SIZE = Histogram(
    f"{PREFIX}_upload_size_bytes", "Size of published artifacts.", buckets=_SIZES
)
DOWNLOAD_BYTES = Counter(f"{PREFIX}_download_bytes_total", "Content bytes sent to clients.")
STORAGE_DURATION = Histogram(
    f"{PREFIX}_storage_operation_duration_seconds",
    "Object storage operation latency.",
    ["backend", "operation"],
    buckets=_LATENCY,
)
STORAGE_ERRORS = Counter(
    f"{PREFIX}_storage_errors_total",
    "Object storage operations that failed.",
    ["backend", "operation"],
)
DB_POOL = Gauge(
    f"{PREFIX}_db_pool_connections",
    "Open asyncpg pool connections by state, idle or in_use (they add up to the "
    "pool's size, so sum() over state is the open connections).",
    ["state"],
    multiprocess_mode="livesum",
)
DB_QUERY_DURATION = Histogram(
    f"{PREFIX}_db_query_duration_seconds",
    "Postgres statement latency by statement kind.",
    ["statement"],
    buckets=_LATENCY,
)
LEASE_VERIFICATIONS = Counter(
    f"{PREFIX}_lease_verifications_total",
    "Lease token checks: ok, invalid_token, inactive, superseded, wrong_project.",
    ["result"],
)
LEASE_CACHE_LOOKUPS = Counter(
    f"{PREFIX}_lease_cache_lookups_total",
    "Lease tokens looked up in the process's claim cache while it is enabled: hit, miss.",
    ["result"],
)
SIGNED_URLS = Counter(
    f"{PREFIX}_signed_urls_total",
    "Signed URLs minted, redeemed, rejected, and mints refused as rate_limited.",
    ["action"],
)
EVENTS_EMITTED = Counter(f"{PREFIX}_events_emitted_total", "Outbox events written.", ["type"])
BUILD_INFO = Gauge(
    f"{PREFIX}_build_info",
    "Build information; the value is always 1.",
    ["version", "python"],
    multiprocess_mode="max",
)
BUILD_INFO.labels(__version__, platform.python_version()).set(1)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def storage_observer(backend: str) -> Callable[[str, float, bool], None]:
    """The callback the object store calls after each operation."""

    def observe(operation: str, seconds: float, ok: bool) -> None:
        STORAGE_DURATION.labels(backend, operation).observe(seconds)
        if not ok:
            STORAGE_ERRORS.labels(backend, operation).inc()

    return observe


def statement_kind(query: str) -> str:
    word = query.lstrip().split(None, 1)[0].upper() if query.strip() else "OTHER"
    return word if word in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH") else "OTHER"


def query_logger(record: Any) -> None:
    """asyncpg query logger: one histogram observation per statement."""
    DB_QUERY_DURATION.labels(statement_kind(record.query)).observe(record.elapsed)


def update_pool(pool: Any) -> None:
    idle = pool.get_idle_size()
    DB_POOL.labels("idle").set(idle)
    DB_POOL.labels("in_use").set(pool.get_size() - idle)


def exposition() -> tuple[bytes, str]:
    """The text exposition of this process, or of every worker in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (multiprocess mode)."""
    if MULTIPROCESS:
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started
