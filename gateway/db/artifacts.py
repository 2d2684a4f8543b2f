"""``artifacts``: lookups, the listing, tombstones and signing epochs.

Artifacts are written by the publish commit (:mod:`gateway.db.publish`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.db import Conn
from gateway.rows import ArtifactRow
from gateway.visibility import Viewer, visible_sql


async def get(conn: Conn, project: str, artifact_id: str) -> ArtifactRow | None:
    row = await conn.fetchrow(
        "SELECT * FROM artifacts WHERE artifact_id = $1 AND project_id = $2",
        artifact_id,
        project,
    )
    return None if row is None else ArtifactRow.from_record(row)


async def for_signed_url(
    conn: Conn, project: str, artifact_id: str, sig_hash: str
) -> tuple[ArtifactRow | None, str | None]:
    """The artifact and the principal that minted the URL with this signature (if any)."""
    row = await conn.fetchrow(
        """
        SELECT a.*, m.principal AS minted_by
        FROM artifacts a
        LEFT JOIN signed_url_mints m
          ON m.artifact_id = a.artifact_id AND m.sig_hash = $3
        WHERE a.artifact_id = $1 AND a.project_id = $2
        """,
        artifact_id,
        project,
        sig_hash,
    )
    if row is None:
        return None, None
    return ArtifactRow.from_record(row), row["minted_by"]


MIME_CLASSES = ("image", "html", "code", "text", "other")
LIST_DEFAULT_LIMIT = 50
LIST_MAX_LIMIT = 200


@dataclass(frozen=True, kw_only=True)
class ListQuery:
    """Filters of ``GET …/artifacts``; ``before_seq`` is the decoded cursor."""

    run_id: str | None = None
    step_id: str | None = None
    job_id: str | None = None
    attempt: int | None = None
    session_id: str | None = None
    owner_kind: str | None = None
    owner_id: str | None = None
    mime_class: str | None = None
    artifact_type: str | None = None
    name_prefix: str | None = None
    include_deleted: bool = False
    before_seq: int | None = None
    limit: int = LIST_DEFAULT_LIMIT


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_page(
    conn: Conn, project: str, query: ListQuery, viewer: Viewer
) -> list[ArtifactRow]:
    """Newest first by commit order (``seq``): keyset pages never repeat or skip a row.

    Only what ``viewer`` may see (:mod:`gateway.visibility`); an admin's listing
    carries no visibility condition at all, so its plan is the plain index walk.
    One more row than ``limit`` is fetched to tell whether another page exists.
    """
    clauses = ["project_id = $1"]
    args: list[Any] = [project]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.replace("?", f"${len(args)}"))

    for column in (
        "run_id",
        "step_id",
        "job_id",
        "attempt",
        "session_id",
        "mime_class",
        "artifact_type",
    ):
        value = getattr(query, column)
        if value is not None:
            add(f"{column} = ?", value)
    if query.owner_kind is not None:
        add("owner_kind = ?", query.owner_kind)
    if query.owner_id is not None:
        add("owner_id = ?", query.owner_id)
    if query.name_prefix is not None:
        add("name LIKE ?", _like_prefix(query.name_prefix))
    if not query.include_deleted:
        clauses.append("state = 'available'")
    if query.before_seq is not None:
        add("seq < ?", query.before_seq)
    if not viewer.is_admin:
        add(visible_sql("?", "false"), viewer.sub)
    args.append(query.limit + 1)
    sql = (
        f"SELECT * FROM artifacts WHERE {' AND '.join(clauses)} "  # noqa: S608 - fixed columns
        f"ORDER BY seq DESC LIMIT ${len(args)}"
    )
    return [ArtifactRow.from_record(row) for row in await conn.fetch(sql, *args)]


_DERIVABLE = (
    "SELECT count(*) FROM artifacts WHERE project_id = $1 AND artifact_id = ANY($2)"  # noqa: S608
    " AND state = 'available' AND " + visible_sql("$3::text", "$4::boolean")
)


async def count_derivable(conn: Conn, project: str, ids: list[str], viewer: Viewer) -> int:
    """How many of ``ids`` are available artifacts of ``project`` that ``viewer`` may see."""
    count: int = await conn.fetchval(
        _DERIVABLE,
        project,
        ids,
        viewer.sub,
        viewer.is_admin,
    )
    return count


async def tombstone(
    conn: Conn, project: str, artifact_id: str, *, deleted_by: str
) -> ArtifactRow | None:
    """Mark an available artifact deleted; None when it already was."""
    row = await conn.fetchrow(
        """
        UPDATE artifacts SET state = 'deleted', deleted_at = now(), deleted_by = $3
        WHERE artifact_id = $1 AND project_id = $2 AND state = 'available'
        RETURNING *
        """,
        artifact_id,
        project,
        deleted_by,
    )
    return None if row is None else ArtifactRow.from_record(row)


async def bump_signing_epoch(conn: Conn, project: str, artifact_id: str) -> None:
    """Revoke every signed URL minted so far for the artifact."""
    await conn.execute(
        "UPDATE artifacts SET signing_epoch = signing_epoch + 1 "
        "WHERE artifact_id = $1 AND project_id = $2",
        artifact_id,
        project,
    )


async def owned_keys(conn: Conn, keys: list[str]) -> set[str]:
    """Which of ``keys`` an available artifact owns (gc keeps those)."""
    rows = await conn.fetch(
        "SELECT object_key FROM artifacts WHERE object_key = ANY($1) AND state = 'available'",
        keys,
    )
    return {row["object_key"] for row in rows}
