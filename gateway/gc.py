"""Garbage collection of object storage: what a crash or a failed delete left behind.

One sweep, older than a grace period so that uploads in progress are never
touched:

1. aborts incomplete multipart uploads under ``projects/``;
2. clears ``pending_uploads`` rows (aborting their upload, deleting their object
   unless an artifact owns it);
3. deletes objects under ``projects/`` that no available artifact owns;
4. retries queued object deletions (``object_deletions``).

Before those, it prunes the rows past their retention (:class:`Retention`), each
table in bounded batches, oldest first:

- ``signed_url_mints``: audit rows ``GATEWAY_AUDIT_RETENTION_SECONDS`` after the
  URL expired;
- ``job_claims``: claims ``GATEWAY_CLAIM_RETENTION_SECONDS`` after they ended
  (released, superseded) or expired;
- ``idempotency_keys``: keys older than ``GATEWAY_IDEMPOTENCY_TTL_SECONDS``;
- ``events``: events older than ``GATEWAY_EVENTS_RETENTION_SECONDS`` (each
  project remembers the highest seq pruned, so a cursor below it answers 410).

Only one replica sweeps at a time (a Postgres advisory lock); the others skip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

import leases
from gateway import backends
from gateway.config import Config
from gateway.db import artifacts as artifact_rows
from gateway.db import deletions, idempotency, mints, uploads
from gateway.db import events as event_rows
from gateway.logs import get_logger
from storage import ObjectInfo, ObjectStore, StorageError

log = get_logger("gateway.gc")
GC_LOCK_ID = 0x4D0B1A58
PREFIX = "projects/"
DEFAULT_GRACE_SECONDS = 3600
BATCH = 500
PRUNE_BATCH = 1000


@dataclass
class GcReport:
    aborted_uploads: int = 0
    cleared_pending: int = 0
    deleted_orphans: int = 0
    retried_deletions: int = 0
    pruned_mints: int = 0
    pruned_claims: int = 0
    pruned_idempotency_keys: int = 0
    pruned_events: int = 0
    failed: int = 0
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Retention:
    """How long rows are kept before the sweep prunes them, in seconds; 0: for ever."""

    audit_seconds: int = 0
    claim_seconds: int = 0
    idempotency_seconds: int = 0
    events_seconds: int = 0

    @classmethod
    def from_config(cls, config: Config) -> Retention:
        return cls(
            audit_seconds=config.audit_retention_seconds,
            claim_seconds=config.claim_retention_seconds,
            idempotency_seconds=config.idempotency_ttl_seconds,
            events_seconds=config.events_retention_seconds,
        )


async def _prune_all(prune: Callable[[datetime], Awaitable[int]], before: datetime) -> int:
    """Run one table's prune, a batch at a time, until a batch comes back short."""
    total = 0
    while True:
        n = await prune(before)
        total += n
        if n < PRUNE_BATCH:
            return total


async def _prune(conn: Any, retention: Retention, report: GcReport) -> None:
    """Prune each table in batches of :data:`PRUNE_BATCH` rows, each its own
    statement, so no sweep holds a long transaction or many locks."""
    now = datetime.now(UTC)
    tables: list[tuple[int, str, Callable[[datetime], Awaitable[int]]]] = [
        (
            retention.audit_seconds,
            "pruned_mints",
            lambda t: mints.prune(conn, expired_before=t, limit=PRUNE_BATCH),
        ),
        (
            retention.claim_seconds,
            "pruned_claims",
            lambda t: leases.prune_ended_claims(conn, ended_before=t, limit=PRUNE_BATCH),
        ),
        (
            retention.idempotency_seconds,
            "pruned_idempotency_keys",
            lambda t: idempotency.prune(conn, created_before=t, limit=PRUNE_BATCH),
        ),
        (
            retention.events_seconds,
            "pruned_events",
            lambda t: event_rows.prune(conn, created_before=t, limit=PRUNE_BATCH),
        ),
    ]
    for seconds, field, prune in tables:
        if seconds > 0:
            pruned = await _prune_all(prune, now - timedelta(seconds=seconds))
            setattr(report, field, getattr(report, field) + pruned)


async def _delete_orphans(
    conn: Any, store: ObjectStore, batch: list[ObjectInfo], report: GcReport
) -> None:
    owned = await artifact_rows.owned_keys(conn, [o.key for o in batch])
    for info in batch:
        if info.key in owned:
            continue
        try:
            await store.delete(info.key)
            report.deleted_orphans += 1
        except StorageError:
            report.failed += 1


async def sweep(
    pool: asyncpg.Pool,
    store: ObjectStore,
    *,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    retention: Retention = Retention(),
) -> GcReport:
    report = GcReport()
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", GC_LOCK_ID):
            report.skipped = True
            return report
        try:
            await _prune(conn, retention, report)
            await _sweep(conn, store, cutoff, grace_seconds, report)
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", GC_LOCK_ID)
            except BaseException:
                # The pool does not reset session state: a connection that may
                # still hold the lock is closed rather than handed out again.
                conn.terminate()
                raise
    log.info("gc.swept", **report.as_dict())
    return report


async def _sweep(
    conn: Any, store: ObjectStore, cutoff: datetime, grace_seconds: int, report: GcReport
) -> None:
    for upload in await store.list_incomplete_uploads(PREFIX):
        if upload.initiated <= cutoff:
            try:
                await store.abort_multipart(upload.key, upload.upload_id)
                report.aborted_uploads += 1
            except StorageError:
                report.failed += 1
    for pending in await uploads.stale(conn, timedelta(seconds=grace_seconds)):
        try:
            if pending.upload_id:
                await store.abort_multipart(pending.object_key, pending.upload_id)
            if not await artifact_rows.owned_keys(conn, [pending.object_key]):
                await store.delete(pending.object_key)
        except StorageError:
            report.failed += 1
            continue
        await uploads.clear(conn, pending.object_key)
        report.cleared_pending += 1
    batch: list[ObjectInfo] = []
    async for info in store.list_objects(PREFIX):
        if info.last_modified <= cutoff:
            batch.append(info)
        if len(batch) >= BATCH:
            await _delete_orphans(conn, store, batch, report)
            batch = []
    if batch:
        await _delete_orphans(conn, store, batch, report)
    for deletion in await deletions.queued(conn):
        try:
            await store.delete(deletion.object_key)
        except StorageError as exc:
            report.failed += 1
            await deletions.failed_again(conn, deletion.object_key, str(exc))
            continue
        await deletions.done(conn, deletion.object_key)
        report.retried_deletions += 1


async def run_once(config: Config, *, grace_seconds: int) -> GcReport:
    """One sweep with a pool and a store of its own (the ``gc`` command), built
    like the server's, with the configured timeouts."""
    pool = await backends.create_pool(config, min_size=1, max_size=2)
    try:
        async with backends.object_store(config) as store:
            return await sweep(
                pool, store, grace_seconds=grace_seconds, retention=Retention.from_config(config)
            )
    finally:
        await pool.close()


async def periodic(
    pool: asyncpg.Pool,
    store: ObjectStore,
    interval: float,
    grace: int,
    retention: Retention = Retention(),
) -> None:
    """Sweep every ``interval`` seconds until cancelled; failures are logged, not fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep(pool, store, grace_seconds=grace, retention=retention)
        except Exception:
            log.warning("gc.failed", exc_info=True)
