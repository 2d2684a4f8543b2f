"""``idempotency_keys``: what each ``Idempotency-Key`` of a credential published.

Keys are written by the publish commit (:mod:`gateway.db.publish`), in the same
statement as the artifact. A key lives ``ttl_seconds`` (0: for ever): an older
one is as if it did not exist (a replay is a new publish), and the gc sweep
prunes it.
"""

from __future__ import annotations

from datetime import datetime

from gateway.db import Conn
from gateway.rows import IdempotencyRecord


async def find(
    conn: Conn, project: str, credential: str, key: str, *, ttl_seconds: int
) -> IdempotencyRecord | None:
    row = await conn.fetchrow(
        """
        SELECT a.*, k.sha256 AS key_sha256, k.request_digest
        FROM idempotency_keys k JOIN artifacts a USING (artifact_id)
        WHERE k.project_id = $1 AND k.credential = $2 AND k.idempotency_key = $3
          AND ($4::integer = 0 OR k.created_at > now() - make_interval(secs => $4::integer))
        """,
        project,
        credential,
        key,
        ttl_seconds,
    )
    return None if row is None else IdempotencyRecord.from_record(row)


async def forget_expired(
    conn: Conn, project: str, credential: str, key: str, *, ttl_seconds: int
) -> None:
    """Delete this key's row if it is older than ``ttl_seconds``, so that the publish
    commit records the key anew; a live key is kept (its conflict is a race)."""
    if ttl_seconds > 0:
        await conn.execute(
            """
            DELETE FROM idempotency_keys
            WHERE project_id = $1 AND credential = $2 AND idempotency_key = $3
              AND created_at <= now() - make_interval(secs => $4::integer)
            """,
            project,
            credential,
            key,
            ttl_seconds,
        )


async def prune(conn: Conn, *, created_before: datetime, limit: int) -> int:
    """Delete at most ``limit`` keys recorded before ``created_before``, oldest first
    (the ``idempotency_keys_created`` index); how many were deleted."""
    status: str = await conn.execute(
        """
        DELETE FROM idempotency_keys
        WHERE (project_id, credential, idempotency_key) IN (
            SELECT project_id, credential, idempotency_key FROM idempotency_keys
            WHERE created_at < $1
            ORDER BY created_at
            LIMIT $2
        )
        """,
        created_before,
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])
