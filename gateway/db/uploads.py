"""``pending_uploads``: an object being written, so gc finds what a crash left."""

from __future__ import annotations

from datetime import timedelta

from gateway.db import Conn
from gateway.rows import PendingUpload


async def mark(conn: Conn, *, project: str, artifact_id: str, key: str, upload_id: str) -> None:
    await conn.execute(
        """
        INSERT INTO pending_uploads (object_key, project_id, artifact_id, upload_id)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (object_key) DO UPDATE SET upload_id = EXCLUDED.upload_id
        """,
        key,
        project,
        artifact_id,
        upload_id,
    )


async def clear(conn: Conn, key: str) -> None:
    await conn.execute("DELETE FROM pending_uploads WHERE object_key = $1", key)


async def stale(conn: Conn, older_than: timedelta) -> list[PendingUpload]:
    """Uploads started longer ago than ``older_than`` (gc's grace period)."""
    rows = await conn.fetch(
        "SELECT * FROM pending_uploads WHERE started_at <= now() - $1::interval", older_than
    )
    return [PendingUpload.from_record(row) for row in rows]
