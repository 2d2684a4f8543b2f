"""Garbage collection of object storage: what a crash or a failed delete left behind.

One sweep, older than a grace period so that uploads in progress are never
touched:

1. aborts incomplete multipart uploads under ``projects/``;
2. clears ``pending_uploads`` rows (aborting their upload, deleting their object
   unless an artifact owns it);
3. deletes objects under ``projects/`` that no available artifact owns;
4. retries queued object deletions (``object_deletions``).

Only one replica sweeps at a time (a Postgres advisory lock); the others skip.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from gateway.logs import get_logger
from storage import ObjectInfo, ObjectStore, StorageError

log = get_logger("gateway.gc")
GC_LOCK_ID = 0x4D0B1A58
PREFIX = "projects/"
DEFAULT_GRACE_SECONDS = 3600
BATCH = 500


@dataclass
class GcReport:
    aborted_uploads: int = 0
    cleared_pending: int = 0
    deleted_orphans: int = 0
    retried_deletions: int = 0
    failed: int = 0
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _owned(conn: Any, keys: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT object_key FROM artifacts WHERE object_key = ANY($1) AND state = 'available'",
        keys,
    )
    return {row["object_key"] for row in rows}


async def _delete_orphans(
    conn: Any, store: ObjectStore, batch: list[ObjectInfo], report: GcReport
) -> None:
    owned = await _owned(conn, [o.key for o in batch])
    for info in batch:
        if info.key in owned:
            continue
        try:
            await store.delete(info.key)
            report.deleted_orphans += 1
        except StorageError:
            report.failed += 1


async def sweep(
    pool: asyncpg.Pool, store: ObjectStore, *, grace_seconds: int = DEFAULT_GRACE_SECONDS
) -> GcReport:
    report = GcReport()
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", GC_LOCK_ID):
            report.skipped = True
            return report
        try:
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
    stale = await conn.fetch(
        "SELECT * FROM pending_uploads WHERE started_at <= now() - $1::interval",
        timedelta(seconds=grace_seconds),
    )
    for row in stale:
        try:
            if row["upload_id"]:
                await store.abort_multipart(row["object_key"], row["upload_id"])
            if not await _owned(conn, [row["object_key"]]):
                await store.delete(row["object_key"])
        except StorageError:
            report.failed += 1
            continue
        await conn.execute("DELETE FROM pending_uploads WHERE object_key = $1", row["object_key"])
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
    for row in await conn.fetch("SELECT object_key FROM object_deletions"):
        try:
            await store.delete(row["object_key"])
        except StorageError as exc:
            report.failed += 1
            await conn.execute(
                "UPDATE object_deletions SET attempts = attempts + 1, last_error = $2 "
                "WHERE object_key = $1",
                row["object_key"],
                str(exc)[:500],
            )
            continue
        await conn.execute("DELETE FROM object_deletions WHERE object_key = $1", row["object_key"])
        report.retried_deletions += 1


async def run_once(config: Any, *, grace_seconds: int) -> GcReport:
    """One sweep with a pool and a store of its own (the ``gc`` command)."""
    from gateway.app import s3_settings
    from storage import S3ObjectStore

    pool = await asyncpg.create_pool(config.database_url, min_size=1, max_size=2)
    try:
        async with S3ObjectStore.connect(s3_settings(config)) as store:
            return await sweep(pool, store, grace_seconds=grace_seconds)
    finally:
        await pool.close()


async def periodic(pool: asyncpg.Pool, store: ObjectStore, interval: float, grace: int) -> None:
    """Sweep every ``interval`` seconds until cancelled; failures are logged, not fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep(pool, store, grace_seconds=grace)
        except Exception:
            log.warning("gc.failed", exc_info=True)
