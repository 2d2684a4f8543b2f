"""The quota's two limits: bytes (an empty file needs a byte left too) and the
number of live artifacts (``limit_artifacts``), both enforced by the commit's
one conditional statement, with nothing stored by a refused publish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from gateway.backends import s3_settings
from storage import S3ObjectStore
from tests.helpers import ADMIN, form, lease, new_claim, publish, quota


@pytest.fixture
async def store(config) -> AsyncIterator[S3ObjectStore]:
    async with S3ObjectStore.connect(s3_settings(config)) as s:
        yield s


async def stored(store: S3ObjectStore, project: str) -> int:
    return len([o async for o in store.list_objects(f"projects/{project}/")])


async def set_limits(client: TestClient, project: str, **limits: int) -> dict:
    resp = await client.put(f"/v1/projects/{project}/quota", json=limits, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def publish_json(client: TestClient, project: str, headers: dict, content: str):
    return await client.post(
        f"/v1/projects/{project}/artifacts",
        json={"name": "empty.md", "content": content},
        headers=headers,
    )


async def test_quota_shows_both_limits_with_their_defaults(client: TestClient, project, config):
    state = await quota(client, project)
    assert state == {
        "project": project,
        "used_bytes": 0,
        "limit_bytes": config.default_quota_bytes,
        "artifact_count": 0,
        "limit_artifacts": config.default_quota_artifacts,
    }
    # Either limit may be set alone; the other keeps its value.
    assert (await set_limits(client, project, limit_artifacts=7))["limit_artifacts"] == 7
    state = await set_limits(client, project, limit_bytes=1000)
    assert (state["limit_bytes"], state["limit_artifacts"]) == (1000, 7)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"limit_count": 3},
        {"limit_artifacts": -1},
        {"limit_artifacts": "3"},
        {"limit_artifacts": True},
    ],
)
async def test_bad_limits_are_400(client: TestClient, project, body) -> None:
    resp = await client.put(f"/v1/projects/{project}/quota", json=body, headers=ADMIN)
    assert resp.status == 400
    assert (await resp.json())["code"] == "invalid_request"


@pytest.mark.parametrize("used", [0, 10])
async def test_an_exhausted_byte_quota_takes_no_empty_file(
    client: TestClient, project, store, db, used
) -> None:
    """A project with no byte left accepts nothing, empty files included, by either body."""
    claim = await new_claim(client, project)
    await set_limits(client, project, limit_bytes=used)
    if used:
        assert (await publish(client, project, lease(claim), b"x" * used)).status == 201
    for attempt in range(3):
        resp = await publish(client, project, lease(claim), b"", filename=f"e{attempt}.txt")
        assert resp.status == 413, await resp.text()
        problem = await resp.json()
        assert problem["code"] == "quota_exceeded"
        assert "empty file" in problem["detail"]
        resp = await publish_json(client, project, lease(claim), "")
        assert resp.status == 413
        assert (await resp.json())["code"] == "quota_exceeded"
    state = await quota(client, project)
    assert (state["used_bytes"], state["artifact_count"]) == (used, 1 if used else 0)
    assert await stored(store, project) == (1 if used else 0)
    events = await db.fetchval("SELECT count(*) FROM events WHERE project_id=$1", project)
    assert events == (1 if used else 0)
    keys = await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE project_id=$1", project)
    assert keys == 0


async def test_empty_files_count_against_the_artifact_limit(
    client: TestClient, project, store, db
) -> None:
    claim = await new_claim(client, project)
    await set_limits(client, project, limit_artifacts=3)
    for i in range(3):
        resp = await publish(client, project, lease(claim), b"", filename=f"e{i}.txt")
        assert resp.status == 201
    resp = await publish(
        client, project, {**lease(claim), "Idempotency-Key": "k-over"}, b"", filename="e3.txt"
    )
    assert resp.status == 413
    problem = await resp.json()
    assert problem["code"] == "quota_exceeded"
    assert (problem["artifact_count"], problem["limit_artifacts"]) == (3, 3)
    assert "its limit is 3" in problem["detail"]
    assert await stored(store, project) == 3
    assert (
        await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE project_id=$1", project) == 0
    )
    # Deleting one makes room for one.
    listing = await (await client.get(f"/v1/projects/{project}/artifacts", headers=ADMIN)).json()
    first = listing["items"][0]["id"]
    resp = await client.delete(f"/v1/projects/{project}/artifacts/{first}", headers=ADMIN)
    assert resp.status == 204
    assert (await publish(client, project, lease(claim), b"again")).status == 201
    assert (await publish(client, project, lease(claim), b"again")).status == 413


async def test_racing_publishes_never_pass_the_artifact_limit(
    client: TestClient, project, store, db
) -> None:
    claim = await new_claim(client, project)
    await set_limits(client, project, limit_artifacts=5)
    results = await asyncio.gather(
        *(
            client.post(
                f"/v1/projects/{project}/artifacts",
                data=form(b"" if i % 2 else b"x" * i, filename=f"f{i}.txt"),
                headers=lease(claim),
            )
            for i in range(30)
        )
    )
    statuses = sorted(r.status for r in results)
    assert (statuses.count(201), statuses.count(413)) == (5, 25)
    state = await quota(client, project)
    assert state["artifact_count"] == 5
    live = await db.fetchval(
        "SELECT count(*) FROM artifacts WHERE project_id=$1 AND state='available'", project
    )
    assert live == 5
    assert await stored(store, project) == 5


async def test_quota_refusals_state_the_size_that_is_known(client: TestClient, project) -> None:
    """The whole request's length when only it is known, the file's size when it is."""
    claim = await new_claim(client, project)
    await set_limits(client, project, limit_bytes=100_000)
    body = form(b"x" * 700_000, filename="big.bin")
    resp = await client.post(f"/v1/projects/{project}/artifacts", data=body, headers=lease(claim))
    assert resp.status == 413
    detail = (await resp.json())["detail"]
    length = int(resp.request_info.headers["Content-Length"])
    assert detail == f"the request of {length} bytes cannot fit in the 100000 bytes left"
    resp = await client.post(
        f"/v1/projects/{project}/artifacts",
        json={"name": "n.md", "content": "y" * 100_001},
        headers=lease(claim),
    )
    assert (await resp.json())["detail"] == (
        "the file of 100001 bytes cannot fit in the 100000 bytes left"
    )
