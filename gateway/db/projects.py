"""``projects``: each project's quota (limits, usage, count) and its last event ``seq``."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Config
from gateway.db import Conn
from gateway.rows import QuotaRow

#: The limits ``PUT …/quota`` sets: either or both; one left out keeps its value.
QUOTA_LIMITS = ("limit_bytes", "limit_artifacts")
MAX_LIMIT = 2**62


@dataclass(frozen=True, kw_only=True)
class DefaultLimits:
    """The configured limits of a project without a row, or without a limit of its own."""

    bytes: int
    artifacts: int

    @classmethod
    def of(cls, config: Config) -> DefaultLimits:
        return cls(bytes=config.default_quota_bytes, artifacts=config.default_quota_artifacts)


async def quota(conn: Conn, project: str, defaults: DefaultLimits) -> QuotaRow:
    """The project's quota; a project without a row (or a limit) has the defaults."""
    row = await conn.fetchrow(
        "SELECT limit_bytes, used_bytes, artifact_count, limit_artifacts FROM projects"
        " WHERE project_id = $1",
        project,
    )
    if row is None:
        return QuotaRow(
            project=project,
            used_bytes=0,
            limit_bytes=defaults.bytes,
            artifact_count=0,
            limit_artifacts=defaults.artifacts,
        )
    return QuotaRow(
        project=project,
        used_bytes=row["used_bytes"],
        limit_bytes=defaults.bytes if row["limit_bytes"] is None else row["limit_bytes"],
        artifact_count=row["artifact_count"],
        limit_artifacts=defaults.artifacts
        if row["limit_artifacts"] is None
        else row["limit_artifacts"],
    )


async def set_limits(
    conn: Conn,
    project: str,
    defaults: DefaultLimits,
    *,
    limit_bytes: int | None,
    limit_artifacts: int | None,
) -> QuotaRow:
    """Set the project's limits (a None one stays as it is). Lowering one below
    usage blocks new publishes only."""
    await conn.execute(
        """
        INSERT INTO projects (project_id, limit_bytes, limit_artifacts) VALUES ($1, $2, $3)
        ON CONFLICT (project_id) DO UPDATE
        SET limit_bytes = COALESCE($2, projects.limit_bytes),
            limit_artifacts = COALESCE($3, projects.limit_artifacts),
            updated_at = now()
        """,
        project,
        limit_bytes,
        limit_artifacts,
    )
    return await quota(conn, project, defaults)


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
