"""``projects``: each project's quota (limit, usage, count) and its last event ``seq``."""

from __future__ import annotations

from gateway.db import Conn
from gateway.rows import QuotaRow


async def quota(conn: Conn, project: str, default_limit: int) -> QuotaRow:
    """The project's quota; a project without a row (or a limit) has ``default_limit``."""
    row = await conn.fetchrow(
        "SELECT limit_bytes, used_bytes, artifact_count FROM projects WHERE project_id = $1",
        project,
    )
    return QuotaRow(
        project=project,
        used_bytes=0 if row is None else row["used_bytes"],
        limit_bytes=default_limit
        if row is None or row["limit_bytes"] is None
        else row["limit_bytes"],
        artifact_count=0 if row is None else row["artifact_count"],
    )


async def set_limit(conn: Conn, project: str, limit: int, default_limit: int) -> QuotaRow:
    """Set the project's limit. Lowering it below usage blocks new publishes only."""
    await conn.execute(
        """
        INSERT INTO projects (project_id, limit_bytes) VALUES ($1, $2)
        ON CONFLICT (project_id) DO UPDATE SET limit_bytes = EXCLUDED.limit_bytes,
            updated_at = now()
        """,
        project,
        limit,
    )
    return await quota(conn, project, default_limit)


async def release(conn: Conn, project: str, size: int) -> int:
    """Give back one artifact's charge and take the project's next event ``seq``."""
    seq: int = await conn.fetchval(
        """
        UPDATE projects SET used_bytes = used_bytes - $2, artifact_count = artifact_count - 1,
            event_seq = event_seq + 1, updated_at = now()
        WHERE project_id = $1
        RETURNING event_seq
        """,
        project,
        size,
    )
    return seq
