"""Listing stays an index walk on a large project: no filter falls back to a sequential
scan of the artifacts table, and a page reads about ``limit`` rows, not the project."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from gateway.db.artifacts import ListQuery, list_page
from gateway.visibility import Viewer

# Enough rows for the planner to prefer indexes; GATEWAY_TEST_LIST_ROWS=1000000 measures
# the million-row case (README, "Performance").
ROWS = int(os.environ.get("GATEWAY_TEST_LIST_ROWS", "200000"))


@pytest.fixture(scope="module")
async def big_project(backends) -> AsyncIterator[str]:
    project = "big-" + secrets.token_hex(4)
    conn = await asyncpg.connect(backends.database_url)
    lease_id = "lse_" + secrets.token_hex(8)
    try:
        await conn.execute(
            """
            INSERT INTO job_claims (lease_id, project_id, run_id, step_id, job_id, attempt,
                worker_session_id, created_by, expires_at, max_expires_at)
            VALUES ($1, $2, 'r', 's', 'j', 1, 'w', 'test', now(), now())
            """,
            lease_id,
            project,
        )
        await conn.execute(
            """
            INSERT INTO artifacts (artifact_id, project_id, seq, name, mime, mime_class, size,
                sha256, content_agrees, owner_kind, owner_id, created_by, lease_id, run_id,
                step_id, job_id, attempt, worker_session_id, session_id, object_key,
                storage_backend, artifact_type)
            SELECT 'art_' || lpad(to_hex(g), 26, '0'), $1, g,
                   'file-' || g || CASE WHEN g % 5 = 0 THEN '.png' ELSE '.txt' END,
                   CASE WHEN g % 5 = 0 THEN 'image/png' ELSE 'text/plain' END,
                   CASE WHEN g % 5 = 0 THEN 'image' ELSE 'text' END,
                   100, repeat('a', 64), true,
                   CASE WHEN g % 10 = 0 THEN 'user' ELSE 'run' END,
                   CASE WHEN g % 10 = 0 THEN 'user:u' || (g % 7) ELSE 'run_' || (g / 1000) END,
                   'w', CASE WHEN g % 10 = 0 THEN NULL ELSE $3 END,
                   'run_' || (g / 1000), 'step_' || (g % 3), 'job_' || (g / 100),
                   1 + g % 2, 'w', 'sess_' || (g / 5000), 'projects/' || $1 || '/' || g, 's3',
                   CASE WHEN g % 7 = 0 THEN 'report' WHEN g % 11 = 0 THEN 'log' END
            FROM generate_series(1, $2) AS g
            """,
            project,
            ROWS,
            lease_id,
        )
        await conn.execute("ANALYZE artifacts")
        yield project
    finally:
        await conn.execute("DELETE FROM artifacts WHERE project_id = $1", project)
        await conn.execute("DELETE FROM job_claims WHERE lease_id = $1", lease_id)
        await conn.close()


class Explaining:
    """Wraps a connection: runs EXPLAIN ANALYZE on the list query instead of the query."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.plan: dict[str, Any] = {}

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        raw = await self.conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
        self.plan = json.loads(raw)[0]
        return []


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


FILTERS = [
    {},
    {"run_id": "run_150"},
    {"step_id": "step_1"},
    {"job_id": "job_1234"},
    {"session_id": "sess_20"},
    {"attempt": 2},
    {"owner_kind": "run", "owner_id": "run_42"},
    {"owner_kind": "user", "owner_id": "user:u3"},
    {"mime_class": "image"},
    {"artifact_type": "report"},
    {"artifact_type": "log", "before_seq": 100_000},
    {"name_prefix": "file-1999"},
    {"before_seq": 100_000},
    {"run_id": "run_150", "mime_class": "image", "before_seq": 150_500},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
async def test_filtered_page_is_an_index_walk(backends, big_project, filters) -> None:
    conn = await asyncpg.connect(backends.database_url)
    try:
        explaining = Explaining(conn)
        await list_page(
            explaining,
            big_project,
            ListQuery(limit=50, **filters),
            Viewer(sub="user:reader", is_admin=False),
        )
    finally:
        await conn.close()
    plan = explaining.plan["Plan"]
    print(f"{filters}: {explaining.plan['Execution Time']:.2f} ms")
    scans = [n for n in nodes(plan) if n.get("Relation Name") == "artifacts"]
    assert scans, plan
    assert all(n["Node Type"] != "Seq Scan" for n in scans), json.dumps(plan)[:2000]
    assert explaining.plan["Execution Time"] < 500, explaining.plan["Execution Time"]
