"""Artifact rows: ids, the publish commit, lookups, quota and their JSON shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from ulid import ULID

import leases
from gateway.errors import ApiError, IdempotencyConflict, InvalidRequest, QuotaExceeded
from gateway.jsonio import rfc3339, stored_json
from gateway.logs import get_logger

EVENTS_CHANNEL = "gateway_events"
log = get_logger("gateway.artifacts")


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
    request_digest: str = ""  # sha256 of the descriptive parts (Idempotency-Key)
    # Who may be named in derived_from: see visible_to(). None for a lease (run artifacts).
    viewer: str | None = None
    viewer_is_admin: bool = False


@dataclass(frozen=True, kw_only=True)
class IdempotencyClaim:
    credential: str
    key: str


def visible_to(viewer: str, is_admin: str) -> str:
    """The visibility rule as a SQL condition on ``artifacts``, over two parameters.

    Run artifacts: every reader of the project. Principal artifacts: their owner
    (``viewer``, a sub) and admins (``is_admin``). ``viewer`` may be NULL (a lease),
    which sees run artifacts only.
    """
    return f"(owner_kind = 'run' OR owner_id = {viewer} OR {is_admin})"


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


def with_metadata(artifact: dict[str, Any], stored: str | None) -> dict[str, Any]:
    """Set ``artifact["metadata"]`` from its stored JSON text.

    Metadata that cannot be served (written before the input limits, too deep to
    encode) is served as ``{}`` with ``"metadata_omitted": "unreadable"``, so one
    odd row never fails a page, a listing or an event stream.
    """
    metadata, readable = stored_json(stored)
    if readable and isinstance(metadata, dict):
        artifact["metadata"] = metadata
    elif stored is not None:
        artifact["metadata"] = {}
        artifact["metadata_omitted"] = "unreadable"
        log.warning("artifact.metadata_unreadable", artifact_id=artifact.get("id"))
    return artifact


def full(row: asyncpg.Record) -> dict[str, Any]:
    """The whole artifact, as ``GET …/artifacts/{id}`` answers."""
    lineage = None
    if row["lease_id"] is not None:
        lineage = {key: row[key] for key in leases.LINEAGE_FIELDS}
    artifact = {
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
        "metadata": {},
        "derived_from": list(row["derived_from"]),
    }
    metadata = row["metadata"]
    return with_metadata(artifact, metadata if isinstance(metadata, str) else json.dumps(metadata))


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
        SELECT a.*, k.request_digest
        FROM idempotency_keys k JOIN artifacts a USING (artifact_id)
        WHERE k.project_id = $1 AND k.credential = $2 AND k.idempotency_key = $3
        """,
        project,
        claim.credential,
        claim.key,
    )
    return row


def check_replay(row: asyncpg.Record, *, sha256: str, request_digest: str) -> None:
    """A replay must repeat the request: the same file and the same descriptive parts.

    Keys recorded before descriptive parts were remembered compare the file only.
    """
    recorded = row["request_digest"]
    if row["sha256"] != sha256 or (recorded is not None and recorded != request_digest):
        raise IdempotencyConflict(
            "this Idempotency-Key was used for a different request "
            "(the file or a descriptive part differs)"
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


def quota_exceeded(size: int, state: dict[str, Any], *, at_least: bool = False) -> ApiError:
    """413 quota_exceeded; ``at_least`` when the upload was cut off at ``size`` bytes."""
    left = max(0, state["limit_bytes"] - state["used_bytes"])
    what = f"at least {size}" if at_least else f"{size}"
    return QuotaExceeded(
        f"upload of {what} bytes exceeds the {left} bytes left",
        extra={"limit_bytes": state["limit_bytes"], "used_bytes": state["used_bytes"]},
    )


# The whole commit is one statement, so one round trip and one implicit
# transaction. Its data-modifying CTEs run in order of dependency:
#   claim   re-checks the lease (FOR SHARE: a concurrent release either committed
#           first, and the claim is gone, or waits until this commit is done);
#   charge  charges quota and takes the project's next event seq with a conditional
#           upsert: the row lock serialises racing publishes of a project and the
#           WHERE clause makes an overrun impossible. A project without a row gets
#           the default limit ($26). It inserts nothing unless the claim holds and
#           every derived_from id is an available artifact the publisher may read;
#   art     inserts the artifact (only with a charge), ev its artifact.created row,
#   idem    its Idempotency-Key (a duplicate key aborts the whole statement),
#   pend    clears the pending-upload row;
# and the final SELECT announces the event with NOTIFY. No row back means nothing
# was written; :func:`_explain_refusal` then says why.
_COMMIT = """
WITH claim AS (
    SELECT lease_id FROM job_claims
    WHERE lease_id = $14 AND state = 'active' AND expires_at > now()
    FOR SHARE
), charge AS (
    INSERT INTO projects AS p (project_id, used_bytes, artifact_count, event_seq)
    SELECT $2::text, $7::bigint, 1, 1
    WHERE ($14::text IS NULL OR EXISTS (SELECT 1 FROM claim))
      AND cardinality($22::text[]) = (
          SELECT count(*) FROM artifacts
          WHERE project_id = $2::text AND artifact_id = ANY($22) AND state = 'available'
            AND {visible})
      AND ($7::bigint <= $26::bigint
           OR EXISTS (SELECT 1 FROM projects WHERE project_id = $2::text))
    ON CONFLICT (project_id) DO UPDATE
    SET used_bytes = p.used_bytes + EXCLUDED.used_bytes,
        artifact_count = p.artifact_count + 1,
        event_seq = p.event_seq + 1,
        updated_at = now()
    WHERE p.used_bytes + EXCLUDED.used_bytes <= COALESCE(p.limit_bytes, $26::bigint)
    RETURNING event_seq
), art AS (
    INSERT INTO artifacts (artifact_id, project_id, seq, name, mime, mime_class, size, sha256,
        sniffed_mime, content_agrees, owner_kind, owner_id, created_by, lease_id, run_id,
        step_id, job_id, attempt, worker_session_id, session_id, description, metadata,
        derived_from, object_key, storage_backend)
    SELECT $1, $2, charge.event_seq, $3, $4, $5, $7, $6, $8, $9, $10, $11, $12, $14, $15,
        $16, $17, $18, $19, $20, $13, $21::jsonb, $22, $23, $24
    FROM charge
    RETURNING *
), ev AS (
    INSERT INTO events (project_id, seq, type, artifact_id, payload, created_at)
    SELECT project_id, seq, 'artifact.created', artifact_id, $25::jsonb, created_at FROM art
), idem AS (
    INSERT INTO idempotency_keys (project_id, credential, idempotency_key, artifact_id,
        sha256, name, request_digest)
    SELECT project_id, $28, $29, artifact_id, sha256, name, $31 FROM art
    WHERE $29::text IS NOT NULL
), pend AS (
    DELETE FROM pending_uploads WHERE $30 AND object_key = $23 AND EXISTS (SELECT 1 FROM art)
)
SELECT art.*, pg_notify($27, art.project_id || ':' || art.seq) FROM art
""".replace("{visible}", visible_to("$32::text", "$33::boolean"))


class IdempotencyRace(Exception):
    """Another publish with the same Idempotency-Key committed first."""


async def commit_publish(
    conn: asyncpg.Connection,
    draft: ArtifactDraft,
    *,
    default_quota: int,
    idempotency: IdempotencyClaim | None,
    pending: bool,
) -> asyncpg.Record:
    """Record a stored object as an artifact, atomically, or raise and record nothing.

    One statement (see ``_COMMIT``): re-check the claim, check ``derived_from``,
    charge quota and take the event seq, insert the artifact, its
    ``artifact.created`` outbox row and its Idempotency-Key, clear the pending
    upload, NOTIFY.
    """
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
    try:
        row: asyncpg.Record | None = await conn.fetchrow(
            _COMMIT,
            draft.artifact_id,
            draft.project,
            draft.name,
            draft.mime,
            draft.mime_class,
            draft.sha256,
            draft.size,
            draft.sniffed_mime,
            draft.content_agrees,
            draft.owner_kind,
            draft.owner_id,
            draft.created_by,
            draft.description,
            draft.lease_id,
            lineage.run_id if lineage else None,
            lineage.step_id if lineage else None,
            lineage.job_id if lineage else None,
            lineage.attempt if lineage else None,
            lineage.worker_session_id if lineage else None,
            lineage.session_id if lineage else None,
            json.dumps(draft.metadata),
            list(draft.derived_from),
            draft.object_key,
            draft.storage_backend,
            json.dumps(payload),
            default_quota,
            EVENTS_CHANNEL,
            idempotency.credential if idempotency else None,
            idempotency.key if idempotency else None,
            pending,
            draft.request_digest,
            draft.viewer,
            draft.viewer_is_admin,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "idempotency_keys_pkey":
            raise IdempotencyRace from None
        raise
    if row is None:
        await _explain_refusal(conn, draft, default_quota)
        raise AssertionError("a refused commit must have a reason")  # pragma: no cover
    return row


_DERIVABLE_COUNT = (
    "SELECT count(*) FROM artifacts WHERE project_id = $1 AND artifact_id = ANY($2)"  # noqa: S608
    " AND state = 'available' AND " + visible_to("$3::text", "$4::boolean")
)


async def _explain_refusal(conn: Any, draft: ArtifactDraft, default_quota: int) -> None:
    """Why the commit wrote nothing: the lease, derived_from, or the quota. Raises."""
    if draft.lease_id is not None:
        await leases.active_claim(conn, draft.lease_id)
    if draft.derived_from:
        found = await conn.fetchval(
            _DERIVABLE_COUNT,
            draft.project,
            list(draft.derived_from),
            draft.viewer,
            draft.viewer_is_admin,
        )
        if found != len(draft.derived_from):
            # The same answer for an id that does not exist and one the publisher
            # may not see, so derived_from cannot probe for ids.
            raise InvalidRequest(
                "derived_from names an artifact that does not exist, was deleted, "
                "or that you cannot read"
            )
    raise quota_exceeded(draft.size, await quota_state(conn, draft.project, default_quota))


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
        add(visible_to("?", "false"), viewer)
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
