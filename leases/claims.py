"""Job claims: the rows that make a lease token worth something.

A scheduler registers a claim for one attempt of one job (project, run, step,
job); the gateway mints a lease token for it. A claim is *active* until it is
released, superseded by a higher attempt of the same job, or its ``expires_at``
passes (renewal moves ``expires_at``, never past ``max_expires_at``, which is
the token's own ``exp``). All time comparisons use the database clock, so every
replica agrees.

Every function takes an asyncpg connection (or pool) and runs one indexed
statement, or a short transaction for registration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from ulid import ULID

from leases.errors import (
    ClaimConflict,
    ClaimNotFound,
    LeaseInactive,
    LeaseSuperseded,
    LeaseWrongProject,
)

CLAIMS_CHANNEL = "claims_changed"
DEFAULT_TTL_SECONDS = 3600
"""A claim's lifetime when its registration or renewal names none."""
MAX_ATTEMPT = 1_000_000
"""The highest attempt number a claim may carry."""
"""Released and superseded claims are announced here (their lease id) on commit, so
every replica's :class:`~leases.cache.ClaimCache` evicts them."""
LINEAGE_FIELDS = ("run_id", "step_id", "job_id", "attempt", "worker_session_id", "session_id")


@dataclass(frozen=True, kw_only=True)
class Lineage:
    """Where a run artifact comes from; derived from the claim, never from a request."""

    run_id: str
    step_id: str
    job_id: str
    attempt: int
    worker_session_id: str
    session_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class Claim:
    lease_id: str
    project: str
    lineage: Lineage
    state: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    max_expires_at: datetime
    ended_at: datetime | None
    superseded_by: str | None
    live: bool  # state is active and expires_at is in the future (database clock)
    seconds_left: float  # until expires_at, by the database clock when the row was read

    def ensure_active(self, project: str | None = None) -> Claim:
        """Return self if this claim may publish to ``project``; raise otherwise."""
        if self.state == "superseded":
            raise LeaseSuperseded(self.lease_id, self.superseded_by)
        if self.state != "active":
            raise LeaseInactive(self.lease_id, self.state)
        if not self.live:
            raise LeaseInactive(self.lease_id, "expired")
        if project is not None and project != self.project:
            raise LeaseWrongProject(self.lease_id, project)
        return self


def new_lease_id() -> str:
    return f"lse_{ULID()}"


_COLUMNS = """
    lease_id, project_id, run_id, step_id, job_id, attempt, worker_session_id, session_id,
    state, created_by, created_at, expires_at, max_expires_at, ended_at, superseded_by,
    (state = 'active' AND expires_at > now()) AS live,
    extract(epoch FROM expires_at - now())::float8 AS seconds_left
"""


def _claim(row: asyncpg.Record) -> Claim:
    return Claim(
        lease_id=row["lease_id"],
        project=row["project_id"],
        lineage=Lineage(
            run_id=row["run_id"],
            step_id=row["step_id"],
            job_id=row["job_id"],
            attempt=row["attempt"],
            worker_session_id=row["worker_session_id"],
            session_id=row["session_id"],
        ),
        state=row["state"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        max_expires_at=row["max_expires_at"],
        ended_at=row["ended_at"],
        superseded_by=row["superseded_by"],
        live=row["live"],
        seconds_left=row["seconds_left"],
    )


async def get_claim(conn: Any, lease_id: str, *, for_share: bool = False) -> Claim | None:
    """One primary-key lookup. ``for_share`` locks the row against a concurrent release."""
    lock = " FOR SHARE" if for_share else ""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM job_claims WHERE lease_id = $1{lock}",  # noqa: S608
        lease_id,
    )
    return None if row is None else _claim(row)


async def active_claim(conn: Any, lease_id: str, *, for_share: bool = False) -> Claim:
    """The claim of ``lease_id`` if it is active; raise LeaseInactive / LeaseSuperseded."""
    claim = await get_claim(conn, lease_id, for_share=for_share)
    if claim is None:
        raise LeaseInactive(lease_id, "unknown")
    return claim.ensure_active()


async def register_claim(
    conn: asyncpg.Connection,
    *,
    project: str,
    lineage: Lineage,
    ttl_seconds: int,
    max_ttl_seconds: int,
    created_by: str,
    lease_id: str | None = None,
) -> tuple[Claim, Claim | None]:
    """Register a claim; a higher attempt supersedes the job's active claim.

    Returns the new claim and the claim it superseded (if any). Registering an
    attempt that is not higher than every attempt the job already has raises
    :class:`ClaimConflict`. Registrations of one job are serialised by a
    transaction-scoped advisory lock, so two schedulers racing cannot both win.
    """
    lease_id = lease_id or new_lease_id()
    ttl_seconds = min(ttl_seconds, max_ttl_seconds)
    job_key = "\x1f".join((project, lineage.run_id, lineage.step_id, lineage.job_id))
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", job_key)
        highest = await conn.fetchval(
            """
            SELECT max(attempt) FROM job_claims
            WHERE project_id = $1 AND run_id = $2 AND step_id = $3 AND job_id = $4
            """,
            project,
            lineage.run_id,
            lineage.step_id,
            lineage.job_id,
        )
        if highest is not None and highest >= lineage.attempt:
            raise ClaimConflict(lineage.job_id, lineage.attempt, highest)
        old = await conn.fetchrow(
            f"""
            WITH old AS (
                UPDATE job_claims SET state = 'superseded', superseded_by = $5, ended_at = now()
                WHERE project_id = $1 AND run_id = $2 AND step_id = $3 AND job_id = $4
                  AND state = 'active'
                RETURNING {_COLUMNS}
            )
            SELECT old.*, pg_notify($6, old.lease_id) FROM old
            """,  # noqa: S608
            project,
            lineage.run_id,
            lineage.step_id,
            lineage.job_id,
            lease_id,
            CLAIMS_CHANNEL,
        )
        row = await conn.fetchrow(
            f"""
            INSERT INTO job_claims (lease_id, project_id, run_id, step_id, job_id, attempt,
                worker_session_id, session_id, created_by, expires_at, max_expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + $10::interval,
                    now() + $11::interval)
            RETURNING {_COLUMNS}
            """,  # noqa: S608
            lease_id,
            project,
            lineage.run_id,
            lineage.step_id,
            lineage.job_id,
            lineage.attempt,
            lineage.worker_session_id,
            lineage.session_id,
            created_by,
            timedelta(seconds=ttl_seconds),
            timedelta(seconds=max_ttl_seconds),
        )
    return _claim(row), (None if old is None else _claim(old))


async def renew_claim(conn: Any, project: str, lease_id: str, ttl_seconds: int) -> Claim:
    """Move ``expires_at`` to now + ttl (capped by the token's lifetime)."""
    row = await conn.fetchrow(
        f"""
        UPDATE job_claims
        SET expires_at = LEAST(now() + $3::interval, max_expires_at)
        WHERE lease_id = $1 AND project_id = $2 AND state = 'active' AND expires_at > now()
        RETURNING {_COLUMNS}
        """,  # noqa: S608
        lease_id,
        project,
        timedelta(seconds=ttl_seconds),
    )
    if row is not None:
        return _claim(row)
    claim = await get_claim(conn, lease_id)
    if claim is None or claim.project != project:
        raise ClaimNotFound(lease_id)
    claim.ensure_active()
    raise LeaseInactive(lease_id, "expired")  # pragma: no cover - raced with expiry


async def release_claim(conn: Any, project: str, lease_id: str) -> Claim:
    """Release the claim at once; releasing an ended claim changes nothing.

    The release is announced on :data:`CLAIMS_CHANNEL` when it commits.
    """
    row = await conn.fetchrow(
        f"""
        WITH released AS (
            UPDATE job_claims SET state = 'released', ended_at = now()
            WHERE lease_id = $1 AND project_id = $2 AND state = 'active'
            RETURNING {_COLUMNS}
        )
        SELECT released.*, pg_notify($3, released.lease_id) FROM released
        """,  # noqa: S608
        lease_id,
        project,
        CLAIMS_CHANNEL,
    )
    if row is not None:
        return _claim(row)
    claim = await get_claim(conn, lease_id)
    if claim is None or claim.project != project:
        raise ClaimNotFound(lease_id)
    return claim


async def prune_ended_claims(conn: Any, *, ended_before: datetime, limit: int) -> int:
    """Delete at most ``limit`` claims that ended (released, superseded) or expired
    before ``ended_before``, oldest first; how many were deleted.

    Artifacts carry their lineage in their own columns, so none needs the row.
    A job's attempts are checked against the claims that are kept.
    """
    ended: str = await conn.execute(
        """
        DELETE FROM job_claims WHERE lease_id IN (
            SELECT lease_id FROM job_claims
            WHERE ended_at IS NOT NULL AND ended_at < $1
            ORDER BY ended_at LIMIT $2
        )
        """,
        ended_before,
        limit,
    )
    n = int(ended.rsplit(" ", 1)[-1])
    if n >= limit:
        return n
    expired: str = await conn.execute(
        """
        DELETE FROM job_claims WHERE lease_id IN (
            SELECT lease_id FROM job_claims
            WHERE state = 'active' AND expires_at < $1
            ORDER BY expires_at LIMIT $2
        )
        """,
        ended_before,
        limit - n,
    )
    return n + int(expired.rsplit(" ", 1)[-1])
