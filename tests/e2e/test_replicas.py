"""Three ``serve`` replicas over one Postgres and one SeaweedFS behave as one gateway."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.e2e.test_serve import Gateway, claim, form, serve
from tests.helpers import ADMIN, READER, SCHEDULER

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def replicas(backends, tmp_path_factory) -> Iterator[list[Gateway]]:
    tmp = tmp_path_factory.mktemp("replicas")
    with ExitStack() as stack:
        yield [stack.enter_context(serve(backends, tmp)) for _ in range(3)]


async def post(
    http: aiohttp.ClientSession, gw: Gateway, project: str, headers: dict, data: bytes
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{gw.base}/v1/projects/{project}/artifacts", data=form(data), headers=headers
    ) as resp:
        return resp.status, await resp.json()


async def test_quota_race_across_replicas(replicas, project, backends) -> None:
    size, fits = 1000, 7
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{replicas[0].base}/v1/projects/{project}/quota",
            json={"limit_bytes": size * fits},
            headers=ADMIN,
        ) as resp:
            assert resp.status == 200
        lease = await claim(http, replicas[0].base, project)
        headers = {"X-Mobius-Lease-Token": lease["lease_token"]}
        results = await asyncio.gather(
            *(post(http, replicas[i % 3], project, headers, os.urandom(size)) for i in range(30))
        )
    statuses = [status for status, _ in results]
    assert statuses.count(201) == fits
    assert statuses.count(413) == 30 - fits
    conn = await asyncpg.connect(backends.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT used_bytes, artifact_count FROM projects WHERE project_id=$1", project
        )
        live = await conn.fetchval(
            "SELECT sum(size) FROM artifacts WHERE project_id=$1 AND state='available'", project
        )
    finally:
        await conn.close()
    assert (row["used_bytes"], row["artifact_count"], live) == (size * fits, fits, size * fits)


async def test_idempotency_key_raced_across_replicas(replicas, project) -> None:
    async with aiohttp.ClientSession() as http:
        lease = await claim(http, replicas[0].base, project)
        headers = {"X-Mobius-Lease-Token": lease["lease_token"], "Idempotency-Key": "once"}
        data = os.urandom(300_000)
        results = await asyncio.gather(
            *(post(http, replicas[i % 3], project, headers, data) for i in range(6))
        )
        assert sorted(status for status, _ in results) == [200] * 5 + [201]
        assert len({body["id"] for _, body in results}) == 1
        async with http.get(
            f"{replicas[2].base}/v1/projects/{project}/artifacts", headers=READER
        ) as resp:
            assert len((await resp.json())["items"]) == 1


async def test_release_on_one_replica_is_refused_on_the_others(replicas, project) -> None:
    async with aiohttp.ClientSession() as http:
        lease = await claim(http, replicas[0].base, project)
        headers = {"X-Mobius-Lease-Token": lease["lease_token"]}
        for gw in replicas:
            assert (await post(http, gw, project, headers, b"ok"))[0] == 201
        async with http.delete(
            f"{replicas[1].base}/v1/projects/{project}/claims/{lease['lease_id']}",
            headers=SCHEDULER,
        ) as resp:
            assert resp.status == 204
        for gw in replicas:  # immediately, everywhere
            status, body = await post(http, gw, project, headers, b"late")
            assert (status, body["code"]) == (403, "lease_inactive")


async def test_events_from_one_replica_stream_from_another(replicas, project) -> None:
    async with aiohttp.ClientSession() as http:
        lease = await claim(http, replicas[0].base, project)
        received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def listen() -> None:
            async with http.get(
                f"{replicas[2].base}/v1/projects/{project}/events",
                headers={**ADMIN, "Accept": "text/event-stream"},
            ) as resp:
                assert resp.status == 200
                async for raw in resp.content:
                    line = raw.decode().strip()
                    if line.startswith("data:"):
                        await received.put(json.loads(line[5:]))

        listener = asyncio.create_task(listen())
        try:
            await asyncio.sleep(0.5)
            status, ref = await post(
                http,
                replicas[0],
                project,
                {"X-Mobius-Lease-Token": lease["lease_token"]},
                b"event me",
            )
            assert status == 201
            async with asyncio.timeout(10):
                event = await received.get()
            assert event["type"] == "artifact.created"
            assert event["artifact"]["id"] == ref["id"]
        finally:
            listener.cancel()
            with pytest.raises(asyncio.CancelledError):
                await listener
