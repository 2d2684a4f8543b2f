"""``object_deletions``: objects whose delete failed, retried by gc until they go."""

from __future__ import annotations

from gateway.db import Conn
from gateway.rows import ObjectDeletion


async def queue(conn: Conn, *, project: str, artifact_id: str | None, key: str, error: str) -> None:
    """Remember an object whose deletion failed; gc retries it."""
    await conn.execute(
        """
        INSERT INTO object_deletions (object_key, project_id, artifact_id, last_error, attempts)
        VALUES ($1, $2, $3, $4, 1)
        ON CONFLICT (object_key) DO UPDATE SET attempts = object_deletions.attempts + 1,
            last_error = EXCLUDED.last_error
        """,
        key,
        project,
        artifact_id,
        error[:500],
    )


async def queued(conn: Conn) -> list[ObjectDeletion]:
    return [
        ObjectDeletion.from_record(r) for r in await conn.fetch("SELECT * FROM object_deletions")
    ]


async def failed_again(conn: Conn, key: str, error: str) -> None:
    await conn.execute(
        "UPDATE object_deletions SET attempts = attempts + 1, last_error = $2 "
        "WHERE object_key = $1",
        key,
        error[:500],
    )


async def done(conn: Conn, key: str) -> None:
    await conn.execute("DELETE FROM object_deletions WHERE object_key = $1", key)
