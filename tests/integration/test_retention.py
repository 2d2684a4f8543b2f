"""Every table is bounded: the gc sweep prunes rows past their retention, and only those."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import gc
from tests.conftest import make_config
from tests.helpers import ADMIN, SCHEDULER, lease, new_claim, publish

DAY = 86400


async def _mint(client: Any, project: str, artifact_id: str, expires_in: int) -> None:
    resp = await client.post(
        f"/v1/projects/{project}/artifacts/{artifact_id}/signed-url",
        json={"expires_in": expires_in},
        headers=ADMIN,
    )
    assert resp.status == 200, await resp.text()


async def test_signed_url_audit_rows_are_pruned_after_their_retention(
    client, backends, project, db
) -> None:
    ref = await (await publish(client, project, ADMIN, b"audited")).json()
    for expires_in in (60, 120, 180):
        await _mint(client, project, ref["id"], expires_in)
    rows = await db.fetch(
        "SELECT mint_id FROM signed_url_mints WHERE project_id=$1 ORDER BY expires_at", project
    )
    assert len(rows) == 3
    old, recent, live = (r["mint_id"] for r in rows)
    # 91 days past expiry: beyond the default 90 days; 89 days: within it; live: not expired
    await db.execute(
        "UPDATE signed_url_mints SET expires_at = now() - make_interval(days => 91) "
        "WHERE mint_id=$1",
        old,
    )
    await db.execute(
        "UPDATE signed_url_mints SET expires_at = now() - make_interval(days => 89) "
        "WHERE mint_id=$1",
        recent,
    )
    config = make_config(backends)
    assert config.audit_retention_seconds == 90 * DAY

    never = await gc.run_once(config.with_overrides(audit_retention_seconds=0), grace_seconds=3600)
    assert never.pruned_mints == 0
    left = {
        r["mint_id"]
        for r in await db.fetch("SELECT mint_id FROM signed_url_mints WHERE project_id=$1", project)
    }
    assert left == {old, recent, live}

    report = await gc.run_once(config, grace_seconds=3600)
    assert report.pruned_mints >= 1 and not report.skipped
    left = {
        r["mint_id"]
        for r in await db.fetch("SELECT mint_id FROM signed_url_mints WHERE project_id=$1", project)
    }
    assert left == {recent, live}
    # the artifact and its reads are untouched
    assert (
        await client.get(f"/v1/projects/{project}/artifacts/{ref['id']}", headers=ADMIN)
    ).status == 200


async def test_pruning_runs_in_batches_until_nothing_is_past_retention(
    client, backends, project, db
) -> None:
    ref = await (await publish(client, project, ADMIN, b"many mints")).json()
    total = gc.PRUNE_BATCH * 2 + 17
    await db.execute(
        """
        INSERT INTO signed_url_mints (project_id, artifact_id, principal, kid, sig_hash,
            signing_epoch, expires_at)
        SELECT $1, $2, 'user:reader', 'url-1', md5($2 || i::text), 0,
               now() - make_interval(days => 100, secs => i)
        FROM generate_series(1, $3) AS i
        """,
        project,
        ref["id"],
        total,
    )
    await _mint(client, project, ref["id"], 60)
    report = await gc.run_once(make_config(backends), grace_seconds=3600)
    assert report.pruned_mints >= total
    assert (
        await db.fetchval("SELECT count(*) FROM signed_url_mints WHERE project_id=$1", project) == 1
    )


async def test_ended_and_expired_claims_are_pruned_after_their_retention(
    client, backends, project, db
) -> None:
    job = "job_pruned"
    first = await new_claim(client, project, job_id=job, attempt=1)
    published = await publish(client, project, lease(first), b"from attempt 1")
    assert published.status == 201, await published.text()
    art = await published.json()
    second = await new_claim(client, project, job_id=job, attempt=2)  # supersedes the first
    released = await new_claim(client, project)
    url = f"/v1/projects/{project}/claims/{released['lease_id']}"
    assert (await client.delete(url, headers=SCHEDULER)).status == 204
    recent = await new_claim(client, project)
    assert (
        await client.delete(
            f"/v1/projects/{project}/claims/{recent['lease_id']}", headers=SCHEDULER
        )
    ).status == 204
    expired = await new_claim(client, project)
    live = await new_claim(client, project)
    # 31 days past: beyond the default 30 days; the recent release 29 days past: within
    await db.execute(
        "UPDATE job_claims SET ended_at = now() - make_interval(days => 31) "
        "WHERE lease_id = ANY($1)",
        [first["lease_id"], released["lease_id"]],
    )
    await db.execute(
        "UPDATE job_claims SET ended_at = now() - make_interval(days => 29) WHERE lease_id=$1",
        recent["lease_id"],
    )
    await db.execute(
        "UPDATE job_claims SET expires_at = now() - make_interval(days => 31),"
        " max_expires_at = now() - make_interval(days => 31) WHERE lease_id=$1",
        expired["lease_id"],
    )
    config = make_config(backends)
    assert config.claim_retention_seconds == 30 * DAY
    kept = {first["lease_id"], second["lease_id"], released["lease_id"], recent["lease_id"]}
    kept |= {expired["lease_id"], live["lease_id"]}

    async def claims() -> set[str]:
        rows = await db.fetch("SELECT lease_id FROM job_claims WHERE project_id=$1", project)
        return {r["lease_id"] for r in rows}

    never = await gc.run_once(config.with_overrides(claim_retention_seconds=0), grace_seconds=3600)
    assert never.pruned_claims == 0 and await claims() == kept

    report = await gc.run_once(config, grace_seconds=3600)
    assert report.pruned_claims >= 3
    assert await claims() == {second["lease_id"], recent["lease_id"], live["lease_id"]}
    # the artifact of the pruned claim keeps its lineage, and reads as before
    resp = await client.get(f"/v1/projects/{project}/artifacts/{art['id']}", headers=ADMIN)
    assert resp.status == 200
    body = await resp.json()
    assert body["lineage"]["job_id"] == job and body["lineage"]["attempt"] == 1
    row = await db.fetchrow(
        "SELECT lease_id, job_id, attempt FROM artifacts WHERE artifact_id=$1", art["id"]
    )
    assert (row["lease_id"], row["job_id"], row["attempt"]) == (first["lease_id"], job, 1)
    # the live claims still publish
    assert (await publish(client, project, lease(second), b"attempt 2")).status == 201
    assert (await publish(client, project, lease(live), b"live")).status == 201


async def test_a_replay_after_the_idempotency_ttl_is_a_new_publish(
    client, backends, project, db
) -> None:
    headers = {**ADMIN, "Idempotency-Key": "nightly-report"}
    first = await publish(client, project, headers, b"report")
    assert first.status == 201, await first.text()
    first_id = (await first.json())["id"]
    again = await publish(client, project, headers, b"report")
    assert again.status == 200 and (await again.json())["id"] == first_id
    # 25 hours later: past the default 24 hours
    await db.execute(
        "UPDATE idempotency_keys SET created_at = now() - make_interval(hours => 25) "
        "WHERE project_id=$1",
        project,
    )
    later = await publish(client, project, headers, b"report")
    assert later.status == 201, await later.text()
    later_id = (await later.json())["id"]
    assert later_id != first_id
    # the key now names the new publish, for another 24 hours
    replay = await publish(client, project, headers, b"report")
    assert replay.status == 200 and (await replay.json())["id"] == later_id
    # an expired key no longer pins the request: different bytes publish too
    await db.execute(
        "UPDATE idempotency_keys SET created_at = now() - make_interval(hours => 25) "
        "WHERE project_id=$1",
        project,
    )
    other = await publish(client, project, headers, b"another report")
    assert other.status == 201, await other.text()


async def test_expired_idempotency_keys_are_pruned(client, backends, project, db) -> None:
    for key in ("old", "live"):
        resp = await publish(client, project, {**ADMIN, "Idempotency-Key": key}, key.encode())
        assert resp.status == 201
    await db.execute(
        "UPDATE idempotency_keys SET created_at = now() - make_interval(hours => 25) "
        "WHERE project_id=$1 AND idempotency_key='old'",
        project,
    )
    config = make_config(backends)
    never = await gc.run_once(config.with_overrides(idempotency_ttl_seconds=0), grace_seconds=3600)
    assert never.pruned_idempotency_keys == 0
    report = await gc.run_once(config, grace_seconds=3600)
    assert report.pruned_idempotency_keys >= 1
    left = await db.fetch(
        "SELECT idempotency_key FROM idempotency_keys WHERE project_id=$1", project
    )
    assert [r["idempotency_key"] for r in left] == ["live"]
    # the artifacts stay
    assert await db.fetchval("SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 2


async def test_events_are_pruned_and_an_older_cursor_answers_410(
    client, backends, project, db
) -> None:
    for i in range(3):
        resp = await publish(client, project, ADMIN, f"event {i}".encode())
        assert resp.status == 201
    url = f"/v1/projects/{project}/events"
    page = await (await client.get(url, headers=ADMIN)).json()
    assert [e["seq"] for e in page["items"]] == [1, 2, 3]
    # the first two are 31 days old: past the default 30 days
    await db.execute(
        "UPDATE events SET created_at = now() - make_interval(days => 31) "
        "WHERE project_id=$1 AND seq <= 2",
        project,
    )
    config = make_config(backends)
    assert config.events_retention_seconds == 30 * DAY
    never = await gc.run_once(config.with_overrides(events_retention_seconds=0), grace_seconds=3600)
    assert never.pruned_events == 0
    assert (await (await client.get(url, headers=ADMIN)).json())["items"][0]["seq"] == 1

    report = await gc.run_once(config, grace_seconds=3600)
    assert report.pruned_events >= 2
    kept = await db.fetch("SELECT seq FROM events WHERE project_id=$1", project)
    assert [r["seq"] for r in kept] == [3]
    # from the start (no cursor, after=0): what is kept, from the oldest kept
    for query in ("", "?after=0"):
        page = await (await client.get(url + query, headers=ADMIN)).json()
        assert [e["seq"] for e in page["items"]] == [3]
    # a resume below the horizon would hide a gap: 410
    for after in (1,):
        query = f"?after={after}"
        resp = await client.get(url + query, headers=ADMIN)
        assert resp.status == 410, (after, await resp.text())
        body = await resp.json()
        assert body["code"] == "events_expired" and body["pruned_seq"] == 2
        assert resp.content_type == "application/problem+json"
        # the live stream too, by ?after= and by Last-Event-ID
        resp = await client.get(url + query, headers={**ADMIN, "Accept": "text/event-stream"})
        assert resp.status == 410 and (await resp.json())["code"] == "events_expired"
        headers = {**ADMIN, "Accept": "text/event-stream", "Last-Event-ID": str(after)}
        resp = await client.get(url + "?after=2", headers=headers)
        assert resp.status == 410 and (await resp.json())["code"] == "events_expired"
    # from the horizon on, the feed answers what is kept, without a gap
    page = await (await client.get(url + "?after=2", headers=ADMIN)).json()
    assert [e["seq"] for e in page["items"]] == [3]
    stream = await client.get(
        url, headers={**ADMIN, "Accept": "text/event-stream", "Last-Event-ID": "2"}
    )
    assert stream.status == 200
    line = b""
    while not line.startswith(b"id:"):
        line = await asyncio.wait_for(stream.content.readline(), 30)
    assert line.strip() == b"id: 3"
    stream.close()


async def test_the_sweep_finds_old_rows_by_index_and_artifacts_need_no_claim(db) -> None:
    indexes = {
        r["indexname"]
        for r in await db.fetch("SELECT indexname FROM pg_indexes WHERE schemaname='public'")
    }
    assert {
        "signed_url_mints_expires",
        "job_claims_ended",
        "job_claims_expires_active",
        "idempotency_keys_created",
        "events_created",
    } <= indexes
    references = await db.fetch(
        "SELECT conname FROM pg_constraint WHERE contype='f' AND confrelid='job_claims'::regclass"
    )
    assert references == []
