"""The database surface: every SQL statement the gateway runs, one module per table.

| module | table(s) |
| --- | --- |
| :mod:`gateway.db.artifacts` | ``artifacts`` (lookups, the listing, tombstones, signing epochs) |
| :mod:`gateway.db.projects` | ``projects`` (quota and the per-project event ``seq``) |
| :mod:`gateway.db.events` | ``events`` (the outbox: pages of the feed, ``NOTIFY``) |
| :mod:`gateway.db.uploads` | ``pending_uploads`` (objects being written) |
| :mod:`gateway.db.deletions` | ``object_deletions`` (deletes to retry) |
| :mod:`gateway.db.idempotency` | ``idempotency_keys`` |
| :mod:`gateway.db.mints` | ``signed_url_mints`` (the audit of signed URLs) |
| :mod:`gateway.db.publish` | the publish commit: one statement over several tables |

``job_claims`` belongs to :mod:`leases.claims`; ``schema_migrations`` to
:mod:`gateway.migrate`. Functions take an asyncpg connection or pool and return
typed rows (:mod:`gateway.rows`).
"""

from typing import Any

Conn = Any
"""An ``asyncpg.Connection`` or ``asyncpg.Pool`` (both have ``fetch``/``execute``)."""
