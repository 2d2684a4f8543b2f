"""The publish commit: one statement that records a stored object as an artifact.

It touches several tables at once, which is why it has a module of its own: one
round trip and one implicit transaction, so either everything below happens or
nothing does. Its data-modifying CTEs run in order of dependency:

- ``claim`` re-checks the lease (``FOR SHARE``: a concurrent release either
  committed first, and the claim is gone, or waits until this commit is done);
- ``charge`` charges quota and takes the project's next event ``seq`` with a
  conditional upsert: the row lock serialises racing publishes of a project and
  the ``WHERE`` clause makes an overrun impossible. A project without a row gets
  the default limits. An empty file needs a byte left too (``GREATEST(size, 1)``),
  so a project whose byte quota is used up takes nothing, and the live artifacts
  stay within ``limit_artifacts``. It inserts nothing unless the claim holds and every
  ``derived_from`` id is an available artifact the publisher may read;
- ``art`` inserts the artifact (only with a charge), ``ev`` its
  ``artifact.created`` event (the artifact's JSON, built by the caller from the
  same values), ``idem`` its Idempotency-Key (a duplicate key aborts the whole
  statement), ``pend`` clears the pending-upload row;
- the final ``SELECT`` announces the event with ``NOTIFY``.

No row back means nothing was written; the caller then finds out why.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.db.events import EVENTS_CHANNEL
from gateway.db.projects import DefaultLimits
from gateway.rows import ArtifactRow
from gateway.visibility import Viewer, visible_sql

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
      AND ((GREATEST($7::bigint, 1) <= $26::bigint AND 1 <= $36::bigint)
           OR EXISTS (SELECT 1 FROM projects WHERE project_id = $2::text))
    ON CONFLICT (project_id) DO UPDATE
    SET used_bytes = p.used_bytes + EXCLUDED.used_bytes,
        artifact_count = p.artifact_count + 1,
        event_seq = p.event_seq + 1,
        updated_at = now()
    WHERE p.used_bytes + GREATEST(EXCLUDED.used_bytes, 1) <= COALESCE(p.limit_bytes, $26::bigint)
      AND p.artifact_count < COALESCE(p.limit_artifacts, $36::bigint)
    RETURNING event_seq
), art AS (
    INSERT INTO artifacts (artifact_id, project_id, seq, name, mime, mime_class, size, sha256,
        sniffed_mime, content_agrees, owner_kind, owner_id, created_by, lease_id, run_id,
        step_id, job_id, attempt, worker_session_id, session_id, description, metadata,
        derived_from, object_key, storage_backend, created_at, artifact_type)
    SELECT $1, $2, charge.event_seq, $3, $4, $5, $7, $6, $8, $9, $10, $11, $12, $14, $15,
        $16, $17, $18, $19, $20, $13, $21::jsonb, $22, $23, $24, $34, $35
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
""".replace("{visible}", visible_sql("$32::text", "$33::boolean"))


class IdempotencyRace(Exception):
    """Another publish with the same Idempotency-Key committed first."""


@dataclass(frozen=True, kw_only=True)
class IdempotencyClaim:
    """The Idempotency-Key of a publish, scoped to its credential."""

    credential: str
    key: str


async def commit(
    conn: asyncpg.Connection,
    artifact: ArtifactRow,
    *,
    event_payload: str,
    defaults: DefaultLimits,
    idempotency: IdempotencyClaim | None,
    request_digest: str | None,
    pending: bool,
    viewer: Viewer,
) -> ArtifactRow | None:
    """Record ``artifact`` (its ``seq`` is assigned here), atomically; None if refused.

    ``event_payload`` is the artifact's JSON for its ``artifact.created`` event,
    built from the same values (``created_at`` included), so the event shows the
    artifact exactly as a read of it answers. Refused (the lease ended, a
    ``derived_from`` id ``viewer`` may not use, the quota) writes nothing.
    """
    lineage = artifact.lineage
    try:
        row = await conn.fetchrow(
            _COMMIT,
            artifact.artifact_id,
            artifact.project_id,
            artifact.name,
            artifact.mime,
            artifact.mime_class,
            artifact.sha256,
            artifact.size,
            artifact.sniffed_mime,
            artifact.content_agrees,
            artifact.owner_kind,
            artifact.owner_id,
            artifact.created_by,
            artifact.description,
            artifact.lease_id,
            lineage.run_id if lineage else None,
            lineage.step_id if lineage else None,
            lineage.job_id if lineage else None,
            lineage.attempt if lineage else None,
            lineage.worker_session_id if lineage else None,
            lineage.session_id if lineage else None,
            artifact.metadata,
            list(artifact.derived_from),
            artifact.object_key,
            artifact.storage_backend,
            event_payload,
            defaults.bytes,
            EVENTS_CHANNEL,
            idempotency.credential if idempotency else None,
            idempotency.key if idempotency else None,
            pending,
            request_digest,
            viewer.sub,
            viewer.is_admin,
            artifact.created_at,
            artifact.artifact_type,
            defaults.artifacts,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "idempotency_keys_pkey":
            raise IdempotencyRace from None
        raise
    return None if row is None else ArtifactRow.from_record(row)
