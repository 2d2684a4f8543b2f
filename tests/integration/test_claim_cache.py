"""The claim cache in a running gateway: filled by publishes, emptied by NOTIFY."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from gateway.api.state import CLAIM_CACHE, EVENT_HUB
from tests.helpers import SCHEDULER, eventually, lease, new_claim, publish


async def cached_client(client: TestClient) -> TestClient:
    await eventually(lambda: client.app[CLAIM_CACHE].enabled)
    return client


def token_of(claim: dict[str, Any]) -> str:
    return lease(claim)["X-Mobius-Lease-Token"]


async def test_a_publish_fills_the_cache_and_a_release_empties_it(
    client: TestClient, project: str
) -> None:
    cache = (await cached_client(client)).app[CLAIM_CACHE]
    claim = await new_claim(client, project)
    assert (await publish(client, project, lease(claim))).status == 201
    cached = cache.get(token_of(claim))
    assert cached is not None and cached.lease_id == claim["lease_id"]

    resp = await client.delete(
        f"/v1/projects/{project}/claims/{claim['lease_id']}", headers=SCHEDULER
    )
    assert resp.status in (200, 204)
    await eventually(lambda: cache.get(token_of(claim)) is None)
    resp = await publish(client, project, lease(claim))
    assert resp.status == 403
    assert (await resp.json())["code"] == "lease_inactive"


async def test_a_superseded_claim_leaves_the_cache(client: TestClient, project: str) -> None:
    cache = (await cached_client(client)).app[CLAIM_CACHE]
    first = await new_claim(client, project, attempt=1)
    assert (await publish(client, project, lease(first))).status == 201
    assert cache.get(token_of(first)) is not None
    await new_claim(
        client,
        project,
        attempt=2,
        run_id=first["request"]["run_id"],
        job_id=first["request"]["job_id"],
    )
    await eventually(lambda: cache.get(token_of(first)) is None)
    resp = await publish(client, project, lease(first))
    assert (await resp.json())["code"] == "lease_superseded"


async def test_a_stale_entry_still_publishes_nothing(
    client: TestClient, project: str, db: asyncpg.Connection
) -> None:
    """A change no NOTIFY announced (here: a manual UPDATE) is caught by the commit."""
    cache = (await cached_client(client)).app[CLAIM_CACHE]
    claim = await new_claim(client, project)
    assert (await publish(client, project, lease(claim))).status == 201
    await db.execute(
        "UPDATE job_claims SET state = 'released', ended_at = now() WHERE lease_id = $1",
        claim["lease_id"],
    )
    assert cache.get(token_of(claim)) is not None  # nobody told this replica
    resp = await publish(client, project, lease(claim))
    assert resp.status == 403
    assert (await resp.json())["code"] == "lease_inactive"
    count = await db.fetchval(
        "SELECT count(*) FROM artifacts WHERE lease_id = $1", claim["lease_id"]
    )
    assert count == 1
    assert (
        await db.fetchval("SELECT count(*) FROM pending_uploads WHERE project_id = $1", project)
        == 0
    )


async def test_a_lost_listener_connection_empties_the_cache(
    client: TestClient, project: str, db: asyncpg.Connection
) -> None:
    """Notifications sent while the listener was down are lost: nothing cached survives."""
    cache = (await cached_client(client)).app[CLAIM_CACHE]
    hub = client.app[EVENT_HUB]
    claim = await new_claim(client, project)
    assert (await publish(client, project, lease(claim))).status == 201
    assert cache.get(token_of(claim)) is not None
    old_pid = hub.server_pid
    assert await db.fetchval("SELECT pg_terminate_backend($1)", old_pid)
    await eventually(lambda: hub.server_pid not in (None, old_pid))
    assert cache.enabled
    assert cache.get(token_of(claim)) is None
    assert (await publish(client, project, lease(claim))).status == 201
    assert cache.get(token_of(claim)) is not None


async def test_without_a_listener_nothing_is_cached(client: TestClient, project: str) -> None:
    cache = (await cached_client(client)).app[CLAIM_CACHE]
    claim = await new_claim(client, project)
    assert (await publish(client, project, lease(claim))).status == 201
    await client.app[EVENT_HUB].close()
    assert not cache.enabled and len(cache) == 0
    assert (await publish(client, project, lease(claim))).status == 201
    assert len(cache) == 0
