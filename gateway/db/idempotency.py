"""``idempotency_keys``: what each ``Idempotency-Key`` of a credential published.

Keys are written by the publish commit (:mod:`gateway.db.publish`), in the same
statement as the artifact.
"""

from __future__ import annotations

from gateway.db import Conn
from gateway.rows import IdempotencyRecord


async def find(conn: Conn, project: str, credential: str, key: str) -> IdempotencyRecord | None:
    row = await conn.fetchrow(
        """
        SELECT a.*, k.sha256 AS key_sha256, k.request_digest
        FROM idempotency_keys k JOIN artifacts a USING (artifact_id)
        WHERE k.project_id = $1 AND k.credential = $2 AND k.idempotency_key = $3
        """,
        project,
        credential,
        key,
    )
    return None if row is None else IdempotencyRecord.from_record(row)
