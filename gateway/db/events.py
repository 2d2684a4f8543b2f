"""``events``: the transactional outbox of ``artifact.created`` / ``artifact.deleted``.

Every change writes its event in its own transaction, with the project's next
``seq`` (from :mod:`gateway.db.projects`), and announces it with
``pg_notify('gateway_events', '<project>:<seq>')``. The created event is written
by the publish commit (:mod:`gateway.db.publish`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from gateway.db import Conn
from gateway.rows import EventRow
from gateway.visibility import Viewer, visible_sql

EVENTS_CHANNEL = "gateway_events"
EVENT_TYPES = ("artifact.created", "artifact.deleted")

# One indexed query per page: the primary key (project_id, seq) without a type,
# the (project_id, type, seq) index with one; each event's artifact (by primary
# key) decides, by the one visibility rule, who sees it. The payload's metadata
# is read apart from the rest (see EventRow).
_PAGE = """
SELECT e.seq, e.type, e.artifact_id, (e.payload - 'metadata')::text AS payload,
    (e.payload->'metadata')::text AS metadata, e.created_at
FROM events e JOIN artifacts a ON a.artifact_id = e.artifact_id
WHERE e.project_id = $1 AND e.seq > $2 AND {visible} {of_type}
ORDER BY e.seq
LIMIT $5
"""
_PAGE_ANY = _PAGE.format(visible=visible_sql("$3::text", "$4::boolean", table="a."), of_type="")
_PAGE_OF_TYPE = _PAGE.format(
    visible=visible_sql("$3::text", "$4::boolean", table="a."), of_type="AND e.type = $6"
)
# The live streams' one read per project: every event after the hub's cursor, with
# its artifact's owner, so each stream applies the visibility rule itself.
_FANOUT = """
SELECT e.seq, e.type, e.artifact_id, (e.payload - 'metadata')::text AS payload,
    (e.payload->'metadata')::text AS metadata, e.created_at, a.owner_kind, a.owner_id
FROM events e JOIN artifacts a ON a.artifact_id = e.artifact_id
WHERE e.project_id = $1 AND e.seq > $2
ORDER BY e.seq
LIMIT $3
"""


@dataclass(frozen=True, kw_only=True)
class OwnedEventRow:
    """An event row with its artifact's owner (what the visibility rule needs)."""

    row: EventRow
    owner_kind: str
    owner_id: str


@dataclass(frozen=True, kw_only=True)
class FeedQuery:
    """One page of a project's feed, as one viewer may see it."""

    project: str
    after: int
    event_type: str | None
    limit: int
    viewer: Viewer

    def following(self, after: int) -> FeedQuery:
        """The same query, after another cursor."""
        return dataclasses.replace(self, after=after)


async def page(conn: Conn, query: FeedQuery) -> list[EventRow]:
    """Events of ``query.project`` with ``seq > query.after``, oldest first."""
    args = [query.project, query.after, query.viewer.sub, query.viewer.is_admin, query.limit]
    if query.event_type is None:
        rows = await conn.fetch(_PAGE_ANY, *args)
    else:
        rows = await conn.fetch(_PAGE_OF_TYPE, *args, query.event_type)
    return [EventRow.from_record(row) for row in rows]


async def newest_seq(conn: Conn, project: str) -> int:
    """The highest ``seq`` written for ``project`` (0 for none); committed events only."""
    seq = await conn.fetchval(
        "SELECT coalesce(max(seq), 0) FROM events WHERE project_id = $1", project
    )
    return int(seq)


async def every_after(conn: Conn, project: str, after: int, limit: int) -> list[OwnedEventRow]:
    """Up to ``limit`` events of ``project`` after ``after``, whoever may see them."""
    rows = await conn.fetch(_FANOUT, project, after, limit)
    return [
        OwnedEventRow(
            row=EventRow.from_record(row), owner_kind=row["owner_kind"], owner_id=row["owner_id"]
        )
        for row in rows
    ]


async def append(
    conn: Conn, *, project: str, seq: int, event_type: str, artifact_id: str, payload: str
) -> None:
    """Write one event (``payload``: the artifact as JSON) and announce it."""
    await conn.execute(
        """
        INSERT INTO events (project_id, seq, type, artifact_id, payload)
        VALUES ($1, $2, $3, $4, $5::jsonb)
        """,
        project,
        seq,
        event_type,
        artifact_id,
        payload,
    )
    await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, f"{project}:{seq}")


async def pruned_seq(conn: Conn, project: str) -> int:
    """The highest ``seq`` of ``project`` pruned so far (0: none): the events after a
    lower cursor are no longer all kept."""
    seq = await conn.fetchval(
        "SELECT events_pruned_seq FROM projects WHERE project_id = $1", project
    )
    return 0 if seq is None else int(seq)


async def prune(conn: Conn, *, created_before: datetime, limit: int) -> int:
    """Delete at most ``limit`` events written before ``created_before``, oldest
    first, raising each project's ``events_pruned_seq`` to the highest seq deleted,
    in the same statement; how many were deleted."""
    n = await conn.fetchval(
        """
        WITH gone AS (
            DELETE FROM events WHERE (project_id, seq) IN (
                SELECT project_id, seq FROM events
                WHERE created_at < $1
                ORDER BY created_at
                LIMIT $2
            )
            RETURNING project_id, seq
        ), horizon AS (
            UPDATE projects p SET events_pruned_seq = GREATEST(p.events_pruned_seq, g.top)
            FROM (SELECT project_id, max(seq) AS top FROM gone GROUP BY project_id) g
            WHERE p.project_id = g.project_id
        )
        SELECT count(*) FROM gone
        """,
        created_before,
        limit,
    )
    return int(n)
