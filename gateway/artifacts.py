"""Artifact rows: ids, the publish commit, lookups, quota and their JSON shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from ulid import ULID

import leases
from gateway.errors import ApiError, IdempotencyConflict, InvalidRequest, QuotaExceeded
from gateway.jsonio import rfc3339

EVENTS_CHANNEL = "gateway_events"


def new_artifact_id() -> str:
    """``art_`` + a ULID: time-ordered, 80 random bits."""
    return f"art_{ULID()}"


def object_key(project: str, artifact_id: str) -> str:
    return f"projects/{project}/{artifact_id}"


@dataclass(frozen=True, kw_only=True)
class ArtifactDraft:
    """Everything known about an artifact once its bytes are stored, before commit."""

    artifact_id: str
    project: str
    name: str
    mime: str
    mime_class: str
    size: int
    sha256: str
    sniffed_mime: str | None
    content_agrees: bool
    owner_kind: str
    owner_id: str
    created_by: str
    object_key: str
    storage_backend: str
    lease_id: str | None = None
    lineage: leases.Lineage | None = None
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    derived_from: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class IdempotencyClaim:
    credential: str
    key: str


def reference(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """The short shape a publish answers with."""
    return {
        "type": "artifact",
        "id": row["artifact_id"],
        "name": row["name"],
        "mime": row["mime"],
        "size": row["size"],
        "sha256": row["sha256"],
    }


def full(row: asyncpg.Record) -> dict[str, Any]:
    """The whole artifact, as ``GET …/artifacts/{id}`` answers."""
    lineage = None
    if row["lease_id"] is not None:
        lineage = {key: row[key] for key in leases.LINEAGE_FIELDS}
    metadata = row["metadata"]
    return {
        "type": "artifact",
        "id": row["artifact_id"],
        "project": row["project_id"],
        "name": row["name"],
        "mime": row["mime"],
        "size": row["size"],
        "sha256": row["sha256"],
        "state": row["state"],
        "created_at": rfc3339(row["created_at"]),
        "deleted_at": rfc3339(row["deleted_at"]),
        "owner": {"kind": row["owner_kind"], "id": row["owner_id"]},
        "lineage": lineage,
        "created_by": row["created_by"],
        "description": row["description"],
        "metadata": json.loads(metadata) if isinstance(metadata, str) else metadata,
        "derived_from": list(row["derived_from"]),
    }


async def get_artifact(conn: Any, project: str, artifact_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM artifacts WHERE artifact_id = $1 AND project_id = $2",
        artifact_id,
        project,
    )
    return row


async def find_idempotent(
    conn: Any, project: str, claim: IdempotencyClaim
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        """
        SELECT a.* FROM idempotency_keys k JOIN artifacts a USING (artifact_id)
        WHERE k.project_id = $1 AND k.credential = $2 AND k.idempotency_key = $3
        """,
        project,
        claim.credential,
        claim.key,
    )
    return row


def check_replay(row: asyncpg.Record, *, sha256: str, name: str) -> None:
    """A replay must carry the same body; otherwise 409."""
    if row["sha256"] != sha256 or row["name"] != name:
        raise IdempotencyConflict(
            "this Idempotency-Key was used for a different body (sha256 or name differ)"
        )


async def quota_state(conn: Any, project: str, default_limit: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT limit_bytes, used_bytes, artifact_count FROM projects WHERE project_id = $1",
        project,
    )
    limit = default_limit if row is None or row["limit_bytes"] is None else row["limit_bytes"]
    return {
        "project": project,
        "used_bytes": 0 if row is None else row["used_bytes"],
        "limit_bytes": limit,
        "artifact_count": 0 if row is None else row["artifact_count"],
    }


async def set_quota(conn: Any, project: str, limit: int, default_limit: int) -> dict[str, Any]:
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
    return await quota_state(conn, project, default_limit)


def quota_exceeded(size: int, state: dict[str, Any]) -> ApiError:
    left = max(0, state["limit_bytes"] - state["used_bytes"])
    return QuotaExceeded(
        f"upload of {size} bytes exceeds the {left} bytes left",
        extra={"limit_bytes": state["limit_bytes"], "used_bytes": state["used_bytes"]},
    )


# Charge quota and take the next event seq in one conditional statement: the row
# lock it takes serialises racing publishes of a project, and the WHERE clause
# makes an overrun impossible. A project without a row gets the default limit ($3).
_CHARGE = """
INSERT INTO projects AS p (project_id, used_bytes, artifact_count, event_seq)
SELECT $1::text, $2::bigint, 1, 1
WHERE $2::bigint <= $3::bigint OR EXISTS (SELECT 1 FROM projects WHERE project_id = $1::text)
ON CONFLICT (project_id) DO UPDATE
SET used_bytes = p.used_bytes + EXCLUDED.used_bytes,
    artifact_count = p.artifact_count + 1,
    event_seq = p.event_seq + 1,
    updated_at = now()
WHERE p.used_bytes + EXCLUDED.used_bytes <= COALESCE(p.limit_bytes, $3::bigint)
RETURNING event_seq
"""

_INSERT = """
WITH art AS (
    INSERT INTO artifacts (artifact_id, project_id, seq, name, mime, mime_class, size, sha256,
        sniffed_mime, content_agrees, owner_kind, owner_id, created_by, lease_id, run_id,
        step_id, job_id, attempt, worker_session_id, session_id, description, metadata,
        derived_from, object_key, storage_backend)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
        $19, $20, $21, $22::jsonb, $23, $24, $25)
    RETURNING *
), ev AS (
    INSERT INTO events (project_id, seq, type, artifact_id, payload, created_at)
    SELECT project_id, seq, 'artifact.created', artifact_id, $26::jsonb, created_at FROM art
)
SELECT art.*, pg_notify($27, art.project_id || ':' || art.seq) FROM art
"""


async def commit_publish(
    conn: asyncpg.Connection,
    draft: ArtifactDraft,
    *,
    default_quota: int,
    idempotency: IdempotencyClaim | None,
    pending: bool,
) -> asyncpg.Record:
    """Record a stored object as an artifact, atomically, or raise and record nothing.

    In one transaction: re-check the claim (``FOR SHARE``, so a concurrent release
    either lands first and fails this commit, or waits for it); check
    ``derived_from``; charge quota and take the event seq; insert the artifact and
    its ``artifact.created`` outbox row and NOTIFY; record the Idempotency-Key.
    """
    async with conn.transaction():
        if draft.lease_id is not None:
            await leases.active_claim(conn, draft.lease_id, for_share=True)
        if draft.derived_from:
            found = await conn.fetchval(
                "SELECT count(*) FROM artifacts WHERE project_id = $1 AND artifact_id = ANY($2)",
                draft.project,
                list(draft.derived_from),
            )
            if found != len(draft.derived_from):
                raise InvalidRequest("derived_from names an artifact this project does not have")
        seq = await conn.fetchval(_CHARGE, draft.project, draft.size, default_quota)
        if seq is None:
            raise quota_exceeded(draft.size, await quota_state(conn, draft.project, default_quota))
        lineage = draft.lineage
        payload = {
            "type": "artifact",
            "id": draft.artifact_id,
            "project": draft.project,
            "name": draft.name,
            "mime": draft.mime,
            "size": draft.size,
            "sha256": draft.sha256,
            "owner": {"kind": draft.owner_kind, "id": draft.owner_id},
            "lineage": lineage.as_dict() if lineage else None,
        }
        row: asyncpg.Record = await conn.fetchrow(
            _INSERT,
            draft.artifact_id,
            draft.project,
            seq,
            draft.name,
            draft.mime,
            draft.mime_class,
            draft.size,
            draft.sha256,
            draft.sniffed_mime,
            draft.content_agrees,
            draft.owner_kind,
            draft.owner_id,
            draft.created_by,
            draft.lease_id,
            lineage.run_id if lineage else None,
            lineage.step_id if lineage else None,
            lineage.job_id if lineage else None,
            lineage.attempt if lineage else None,
            lineage.worker_session_id if lineage else None,
            lineage.session_id if lineage else None,
            draft.description,
            json.dumps(draft.metadata),
            list(draft.derived_from),
            draft.object_key,
            draft.storage_backend,
            json.dumps(payload),
            EVENTS_CHANNEL,
        )
        if idempotency is not None:
            stored = await conn.fetchval(
                """
                INSERT INTO idempotency_keys (project_id, credential, idempotency_key,
                    artifact_id, sha256, name)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT DO NOTHING
                RETURNING artifact_id
                """,
                draft.project,
                idempotency.credential,
                idempotency.key,
                draft.artifact_id,
                draft.sha256,
                draft.name,
            )
            if stored is None:
                raise IdempotencyRace
        if pending:
            await conn.execute(
                "DELETE FROM pending_uploads WHERE object_key = $1", draft.object_key
            )
    return row


class IdempotencyRace(Exception):
    """Another publish with the same Idempotency-Key committed first."""


async def mark_pending(
    conn: Any, *, project: str, artifact_id: str, key: str, upload_id: str
) -> None:
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


async def clear_pending(conn: Any, key: str) -> None:
    await conn.execute("DELETE FROM pending_uploads WHERE object_key = $1", key)


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
    name_prefix: str | None = None
    include_deleted: bool = False
    before_seq: int | None = None
    limit: int = 50


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_artifacts(
    conn: Any, project: str, query: ListQuery, *, viewer: str, viewer_is_admin: bool
) -> list[asyncpg.Record]:
    """Newest first by commit order (``seq``): keyset pages never repeat or skip a row.

    Principal-owned artifacts appear only to their owner and to admins. One more
    row than ``limit`` is fetched to tell whether another page exists.
    """
    clauses = ["project_id = $1"]
    args: list[Any] = [project]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.replace("?", f"${len(args)}"))

    for column in ("run_id", "step_id", "job_id", "attempt", "session_id", "mime_class"):
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
    if not viewer_is_admin:
        add("(owner_kind = 'run' OR owner_id = ?)", viewer)
    args.append(query.limit + 1)
    sql = (
        f"SELECT * FROM artifacts WHERE {' AND '.join(clauses)} "  # noqa: S608 - fixed columns
        f"ORDER BY seq DESC LIMIT ${len(args)}"
    )
    rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
    return rows


async def delete_artifact(
    conn: asyncpg.Connection, project: str, artifact_id: str, *, deleted_by: str
) -> asyncpg.Record | None:
    """Tombstone the row, release its quota and write ``artifact.deleted``, atomically.

    Returns the tombstoned row, or None when it was already deleted (nothing changes).
    """
    async with conn.transaction():
        row: asyncpg.Record | None = await conn.fetchrow(
            """
            UPDATE artifacts SET state = 'deleted', deleted_at = now(), deleted_by = $3
            WHERE artifact_id = $1 AND project_id = $2 AND state = 'available'
            RETURNING *
            """,
            artifact_id,
            project,
            deleted_by,
        )
        if row is None:
            return None
        seq = await conn.fetchval(
            """
            UPDATE projects SET used_bytes = used_bytes - $2, artifact_count = artifact_count - 1,
                event_seq = event_seq + 1, updated_at = now()
            WHERE project_id = $1
            RETURNING event_seq
            """,
            project,
            row["size"],
        )
        payload = {**full(row), "state": "deleted"}
        await conn.execute(
            """
            INSERT INTO events (project_id, seq, type, artifact_id, payload)
            VALUES ($1, $2, 'artifact.deleted', $3, $4::jsonb)
            """,
            project,
            seq,
            artifact_id,
            json.dumps(payload),
        )
        await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, f"{project}:{seq}")
    return row


async def queue_object_deletion(
    conn: Any, *, project: str, artifact_id: str | None, key: str, error: str
) -> None:
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


async def record_mint(
    conn: Any,
    *,
    project: str,
    artifact_id: str,
    principal: str,
    kid: str,
    sig_hash: str,
    epoch: int,
    expires_at: Any,
) -> None:
    await conn.execute(
        """
        INSERT INTO signed_url_mints (project_id, artifact_id, principal, kid, sig_hash,
            signing_epoch, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        project,
        artifact_id,
        principal,
        kid,
        sig_hash,
        epoch,
        expires_at,
    )


async def artifact_for_signed_url(
    conn: Any, project: str, artifact_id: str, sig_hash: str
) -> tuple[asyncpg.Record | None, str | None]:
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
    return row, row["minted_by"]


async def revoke_signed_urls(conn: Any, project: str, artifact_id: str) -> None:
    await conn.execute(
        "UPDATE artifacts SET signing_epoch = signing_epoch + 1 "
        "WHERE artifact_id = $1 AND project_id = $2",
        artifact_id,
        project,
    )
