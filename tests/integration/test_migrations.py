"""Migrations apply cleanly to an empty database, once, even when run concurrently."""

import asyncio
import json
import secrets

import asyncpg

from gateway.migrate import apply_migrations, load_migrations, migrate


async def _fresh_database(backends) -> tuple[str, str]:
    name = "migr_" + secrets.token_hex(4)
    admin = await asyncpg.connect(backends.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = backends.database_url.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def _drop(backends, name: str) -> None:
    admin = await asyncpg.connect(backends.database_url)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def test_migration_files_are_ordered_and_unique() -> None:
    migrations = load_migrations()
    assert migrations, "no migrations found"
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


async def test_apply_to_empty_database_then_again(backends) -> None:
    name, url = await _fresh_database(backends)
    try:
        applied = await migrate(url)
        assert [m.version for m in applied] == [m.version for m in load_migrations()]
        assert await migrate(url) == []
        conn = await asyncpg.connect(url)
        try:
            tables = {
                r["tablename"]
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public'"
                )
            }
        finally:
            await conn.close()
        assert {
            "projects",
            "job_claims",
            "artifacts",
            "pending_uploads",
            "object_deletions",
            "idempotency_keys",
            "signed_url_mints",
            "events",
            "schema_migrations",
        } <= tables
    finally:
        await _drop(backends, name)


async def test_concurrent_migrations_apply_each_file_once(backends) -> None:
    name, url = await _fresh_database(backends)
    try:
        conns = [await asyncpg.connect(url) for _ in range(3)]
        try:
            results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        finally:
            for c in conns:
                await c.close()
        applied_counts = sorted(len(r) for r in results)
        assert applied_counts == [0, 0, len(load_migrations())]
    finally:
        await _drop(backends, name)


async def test_created_events_of_earlier_versions_get_the_whole_artifact(backends) -> None:
    """Migrations 0003 and 0004 give artifact.created events written before them the
    artifact as the gateway's one view of it shows it (the shape of GET at that moment)."""
    from gateway import artifacts
    from gateway.rows import ArtifactRow

    name, url = await _fresh_database(backends)
    migrations = load_migrations()
    try:
        conn = await asyncpg.connect(url)
        try:
            for m in migrations:
                if m.version < 3:
                    await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO projects (project_id, used_bytes, artifact_count, event_seq)"
                " VALUES ('p', 5, 1, 1)"
            )
            row = await conn.fetchrow(
                """
                INSERT INTO artifacts (artifact_id, project_id, seq, name, mime, mime_class,
                    size, sha256, content_agrees, owner_kind, owner_id, created_by,
                    description, metadata, derived_from, object_key, storage_backend)
                VALUES ('art_01JD3K7Q9ZB4M2X8N6V5T1R0PA', 'p', 1, 'a.md', 'text/markdown',
                    'text', 5, repeat('a', 64), true, 'user', 'user:alice', 'user:alice',
                    'old', '{"k": [1]}', '{art_01JD3K7Q9ZB4M2X8N6V5T1R0PB}', 'k1', 's3')
                RETURNING *
                """
            )
            short = {
                "type": "artifact",
                "id": row["artifact_id"],
                "project": "p",
                "name": "a.md",
                "mime": "text/markdown",
                "size": 5,
                "sha256": "a" * 64,
                "owner": {"kind": "user", "id": "user:alice"},
                "lineage": None,
            }
            await conn.execute(
                "INSERT INTO events (project_id, seq, type, artifact_id, payload)"
                " VALUES ('p', 1, 'artifact.created', $1, $2::jsonb)",
                row["artifact_id"],
                json.dumps(short),
            )
            for m in migrations:
                if m.version >= 3:
                    await conn.execute(m.sql)
            payload = json.loads(await conn.fetchval("SELECT payload::text FROM events"))
            row = await conn.fetchrow("SELECT * FROM artifacts")
        finally:
            await conn.close()
        assert payload == artifacts.view(ArtifactRow.from_record(row))
    finally:
        await _drop(backends, name)
