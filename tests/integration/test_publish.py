"""Publishing against real Postgres and SeaweedFS: every outcome docs/api.md names."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.backends import s3_settings
from storage import S3ObjectStore
from tests.conftest import bearer, principal_token
from tests.helpers import ADMIN, SCHEDULER, form, lease, new_claim, publish, quota

ULID_ID = re.compile(r"^art_[0-9A-HJKMNP-TV-Z]{26}$")
MiB = 1024 * 1024


@pytest.fixture
async def store(config) -> AsyncIterator[S3ObjectStore]:
    async with S3ObjectStore.connect(s3_settings(config)) as s:
        yield s


async def stored_keys(store: S3ObjectStore, project: str) -> list[str]:
    return [o.key async for o in store.list_objects(f"projects/{project}/")]


async def assert_nothing_published(store, db, project: str) -> None:
    assert await db.fetchval("SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 0
    assert await stored_keys(store, project) == []
    assert await store.list_incomplete_uploads(f"projects/{project}/") == []
    used = await db.fetchval("SELECT used_bytes FROM projects WHERE project_id=$1", project)
    assert used in (None, 0)
    pending = "SELECT count(*) FROM pending_uploads WHERE project_id=$1"
    assert await db.fetchval(pending, project) == 0


async def read_object(store: S3ObjectStore, key: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    async with await store.open_range(key) as reader:
        async for chunk in reader.iter_chunks():
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def test_run_artifact_reference_lineage_and_event(client: TestClient, project, db) -> None:
    claim = await new_claim(client, project)
    data = b"# Report\n\nall green\n"
    resp = await publish(
        client,
        project,
        lease(claim),
        data,
        filename="report.md",
        content_type=None,
        description="nightly",
        metadata=json.dumps({"k": 1}),
    )
    assert resp.status == 201, await resp.text()
    ref = await resp.json()
    assert ULID_ID.match(ref["id"])
    assert ref == {
        "type": "artifact",
        "id": ref["id"],
        "name": "report.md",
        "mime": "text/markdown",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert resp.headers["Location"] == f"/v1/projects/{project}/artifacts/{ref['id']}"
    full = await (await client.get(resp.headers["Location"], headers=ADMIN)).json()
    req = claim["request"]
    assert full["lineage"] == {
        k: req[k]
        for k in ("run_id", "step_id", "job_id", "attempt", "worker_session_id", "session_id")
    }
    assert full["owner"] == {"kind": "run", "id": req["run_id"]}
    assert full["created_by"] == req["worker_session_id"]
    assert full["state"] == "available" and full["deleted_at"] is None
    assert full["project"] == project
    assert full["description"] == "nightly" and full["metadata"] == {"k": 1}
    event = await db.fetchrow("SELECT * FROM events WHERE project_id=$1", project)
    assert event["type"] == "artifact.created" and event["artifact_id"] == ref["id"]
    assert (await quota(client, project))["used_bytes"] == len(data)


async def test_principal_artifact_has_no_lineage(client: TestClient, project) -> None:
    writer = bearer(principal_token("agent:summariser", "artifacts:read artifacts:write"))
    resp = await publish(client, project, writer, b"{}", filename="out.json", content_type=None)
    assert resp.status == 201
    ref = await resp.json()
    full = await (await client.get(resp.headers["Location"], headers=writer)).json()
    assert full["lineage"] is None
    assert full["owner"] == {"kind": "agent", "id": "agent:summariser"}
    assert ref["mime"] == "application/json"
    reader = bearer(principal_token("user:bob", "artifacts:read"))
    assert (await client.get(resp.headers["Location"], headers=reader)).status == 404
    assert (await client.get(resp.headers["Location"], headers=ADMIN)).status == 200


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("query", "run_id"),
        ("query", "attempt"),
        ("header", "X-Mobius-Run-Id"),
        ("header", "X-Mobius-Attempt"),
        ("header", "Project-Id"),
        ("part_before", "run_id"),
        ("part_before", "lineage"),
        ("part_after", "owner"),
        ("part_after", "worker_session_id"),
    ],
)
async def test_lineage_from_the_caller_is_refused(
    client: TestClient, project, store, db, where: str, value: str
) -> None:
    claim = await new_claim(client, project)
    headers = dict(lease(claim))
    url = f"/v1/projects/{project}/artifacts"
    fd = aiohttp.FormData(default_to_multipart=True)
    if where == "query":
        url += f"?{value}=forged"
    elif where == "header":
        headers[value] = "forged"
    elif where == "part_before":
        fd.add_field(value, "forged")
    fd.add_field("file", os.urandom(64 * 1024), filename="x.bin")
    if where == "part_after":
        fd.add_field(value, "forged")
    resp = await client.post(url, data=fd, headers=headers)
    assert resp.status == 400
    assert (await resp.json())["code"] == "lineage_not_allowed"
    await assert_nothing_published(store, db, project)


async def test_malformed_forms_are_invalid_requests(client: TestClient, project, store, db) -> None:
    claim = await new_claim(client, project)
    url = f"/v1/projects/{project}/artifacts"
    cases: list[Any] = []
    no_file = aiohttp.FormData(default_to_multipart=True)
    no_file.add_field("name", "x.txt")
    cases.append(no_file)
    two = aiohttp.FormData()
    two.add_field("file", b"a", filename="a.txt")
    two.add_field("file", b"b", filename="b.txt")
    cases.append(two)
    cases.append(form(metadata="{not json"))
    cases.append(form(metadata="[1, 2]"))
    cases.append(form(derived_from='["nope"]'))
    cases.append(form(description="x" * 5000))
    cases.append(form(name="a\nb"))
    cases.append(form(surprise="1"))
    for body in cases:
        resp = await client.post(url, data=body, headers=lease(claim))
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["code"] == "invalid_request"
    await assert_nothing_published(store, db, project)


async def test_not_multipart_is_415(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    resp = await client.post(
        f"/v1/projects/{project}/artifacts",
        data=b"raw bytes",
        headers={**lease(claim), "Content-Type": "application/octet-stream"},
    )
    assert resp.status == 415
    assert (await resp.json())["code"] == "unsupported_media_type"


async def test_credentials_are_required(client: TestClient, project) -> None:
    resp = await publish(client, project, {})
    assert resp.status == 401
    assert (await resp.json())["code"] == "unauthenticated"
    resp = await publish(client, project, {"X-Mobius-Lease-Token": "garbage"})
    assert resp.status == 401
    reader = bearer(principal_token("user:r", "artifacts:read"))
    resp = await publish(client, project, reader)
    assert resp.status == 403
    assert (await resp.json())["code"] == "forbidden"


async def test_name_part_overrides_and_is_normalised(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    resp = await publish(client, project, lease(claim), name="../../etc/summary.csv")
    assert resp.status == 201
    ref = await resp.json()
    assert ref["name"] == "summary.csv"
    assert ref["mime"] == "text/plain"  # the part's Content-Type wins over the name


async def test_derived_from_must_exist_in_the_project(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    first = await (await publish(client, project, lease(claim))).json()
    resp = await publish(client, project, lease(claim), derived_from=json.dumps([first["id"]]))
    assert resp.status == 201
    full = await (await client.get(resp.headers["Location"], headers=ADMIN)).json()
    assert full["derived_from"] == [first["id"]]
    missing = json.dumps(["art_01JD3K7Q9ZB4M2X8N6V5T1R0PA"])
    resp = await publish(client, project, lease(claim), derived_from=missing)
    assert resp.status == 400


async def test_quota_exceeded_changes_nothing(client: TestClient, project, store, db) -> None:
    resp = await client.put(
        f"/v1/projects/{project}/quota", json={"limit_bytes": 100}, headers=ADMIN
    )
    assert resp.status == 200
    claim = await new_claim(client, project)
    assert (await publish(client, project, lease(claim), b"x" * 60)).status == 201
    resp = await publish(client, project, lease(claim), b"y" * 60)
    assert resp.status == 413
    problem = await resp.json()
    assert problem["code"] == "quota_exceeded"
    assert "40 bytes left" in problem["detail"]
    state = await quota(client, project)
    assert (state["used_bytes"], state["artifact_count"], state["limit_bytes"]) == (60, 1, 100)
    assert len(await stored_keys(store, project)) == 1


async def test_content_length_precheck_answers_before_the_body(
    client: TestClient, project, store, db
) -> None:
    await client.put(f"/v1/projects/{project}/quota", json={"limit_bytes": 1000}, headers=ADMIN)
    claim = await new_claim(client, project)

    async def endless() -> AsyncIterator[bytes]:
        while True:  # never sent: the answer must come from the headers alone
            await asyncio.sleep(0.05)
            yield b"x" * 1024

    resp = await client.post(
        f"/v1/projects/{project}/artifacts",
        data=endless(),
        headers={
            **lease(claim),
            "Content-Type": "multipart/form-data; boundary=xyz",
            "Content-Length": str(10 * MiB),
        },
    )
    assert resp.status == 413
    assert (await resp.json())["code"] == "quota_exceeded"
    await assert_nothing_published(store, db, project)


async def test_max_size_enforced_with_and_without_content_length(
    aiohttp_client, backends, project, store, db
) -> None:
    from gateway.app import create_app
    from tests.conftest import make_config

    client = await aiohttp_client(create_app(make_config(backends, max_artifact_bytes=6 * MiB)))
    claim = await new_claim(client, project)
    big = os.urandom(7 * MiB)
    resp = await publish(client, project, lease(claim), big)  # with Content-Length
    assert resp.status == 413
    assert (await resp.json())["code"] == "artifact_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * (7 * MiB)

    resp = await publish(client, project, lease(claim), chunks())  # chunked, no length
    assert resp.status == 413
    assert (await resp.json())["code"] == "artifact_too_large"
    await assert_nothing_published(store, db, project)


async def test_concurrent_publishes_never_overrun_quota(client: TestClient, project, db) -> None:
    size = 1000
    await client.put(
        f"/v1/projects/{project}/quota", json={"limit_bytes": 10 * size}, headers=ADMIN
    )
    claim = await new_claim(client, project)
    results = await asyncio.gather(
        *(publish(client, project, lease(claim), os.urandom(size)) for _ in range(40))
    )
    statuses = sorted(r.status for r in results)
    assert statuses.count(201) == 10
    assert statuses.count(413) == 30
    state = await quota(client, project)
    assert (state["used_bytes"], state["artifact_count"]) == (10 * size, 10)
    total = await db.fetchval(
        "SELECT sum(size) FROM artifacts WHERE project_id=$1 AND state='available'", project
    )
    assert total == 10 * size


async def test_idempotent_retry_returns_the_first_artifact(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    headers = {**lease(claim), "Idempotency-Key": "publish-1"}
    first = await publish(client, project, headers, b"same bytes")
    assert first.status == 201
    again = await publish(client, project, headers, b"same bytes")
    assert again.status == 200
    assert (await again.json())["id"] == (await first.json())["id"]
    assert (await quota(client, project))["artifact_count"] == 1
    conflict = await publish(client, project, headers, b"other bytes")
    assert conflict.status == 409
    assert (await conflict.json())["code"] == "idempotency_conflict"
    # the key is scoped to the credential: another lease may reuse it
    other = await new_claim(client, project)
    resp = await publish(client, project, {**lease(other), "Idempotency-Key": "publish-1"})
    assert resp.status == 201


async def test_racing_idempotent_publishes_make_one_artifact(
    aiohttp_client, config, project, store
) -> None:
    from gateway.app import create_app

    one = await aiohttp_client(create_app(config))
    two = await aiohttp_client(create_app(config))  # a second replica
    claim = await new_claim(one, project)
    headers = {**lease(claim), "Idempotency-Key": "race"}
    data = os.urandom(256 * 1024)
    results = await asyncio.gather(
        *(publish(c, project, headers, data) for c in (one, two, one, two))
    )
    assert sorted(r.status for r in results) == [200, 200, 200, 201]
    ids = {(await r.json())["id"] for r in results}
    assert len(ids) == 1
    assert (await quota(one, project))["artifact_count"] == 1
    assert len(await stored_keys(store, project)) == 1


@pytest.mark.parametrize("with_length", [True, False])
async def test_large_upload_round_trips(
    client: TestClient, project, store, db, with_length: bool
) -> None:
    claim = await new_claim(client, project)
    size = 100 * MiB + 12345
    digest = hashlib.sha256()
    block = os.urandom(MiB)

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = block[: min(MiB, size - sent)]
            digest.update(piece)
            sent += len(piece)
            yield piece

    fd = aiohttp.FormData()
    payload: Any = body()
    if with_length:
        data = (block * 101)[:size]
        digest.update(data)
        payload = io.BytesIO(data)
    fd.add_field("file", payload, filename="big.bin", content_type="application/octet-stream")
    resp = await client.post(f"/v1/projects/{project}/artifacts", data=fd, headers=lease(claim))
    assert resp.status == 201, await resp.text()
    ref = await resp.json()
    assert ref["size"] == size
    assert ref["sha256"] == digest.hexdigest()
    key = await db.fetchval("SELECT object_key FROM artifacts WHERE artifact_id=$1", ref["id"])
    assert await read_object(store, key) == (digest.hexdigest(), size)
    assert await db.fetchval("SELECT count(*) FROM pending_uploads WHERE object_key=$1", key) == 0


async def test_client_disconnect_mid_upload_leaves_nothing(
    client: TestClient, project, store, db
) -> None:
    claim = await new_claim(client, project)
    boundary = "cutoffboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="cut.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    total = 64 * MiB
    _, writer = await asyncio.open_connection(client.host, client.port)
    request = (
        f"POST /v1/projects/{project}/artifacts HTTP/1.1\r\nHost: x\r\n"
        f"X-Mobius-Lease-Token: {claim['lease_token']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {total}\r\n\r\n"
    ).encode()
    writer.write(request + head)
    block = os.urandom(MiB)
    for _ in range(20):  # 20 MiB: past the first multipart part, then the client vanishes
        writer.write(block)
        await writer.drain()
    await asyncio.sleep(0.3)
    writer.transport.abort()
    for _ in range(100):
        await asyncio.sleep(0.1)
        pending = await db.fetchval(
            "SELECT count(*) FROM pending_uploads WHERE project_id=$1", project
        )
        uploads = await store.list_incomplete_uploads(f"projects/{project}/")
        if pending == 0 and not uploads:
            break
    await assert_nothing_published(store, db, project)


async def test_lease_released_during_upload_publishes_nothing(
    client: TestClient, project, store, db
) -> None:
    claim = await new_claim(client, project)
    released = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for i in range(12):
            if i == 4:
                resp = await client.delete(
                    f"/v1/projects/{project}/claims/{claim['lease_id']}", headers=SCHEDULER
                )
                assert resp.status == 204
                released.set()
            yield os.urandom(MiB)

    resp = await publish(client, project, lease(claim), body())
    assert released.is_set()
    assert resp.status == 403
    assert (await resp.json())["code"] == "lease_inactive"
    await assert_nothing_published(store, db, project)


async def test_object_storage_down_is_503_and_nothing_published(
    aiohttp_client, backends, project, db
) -> None:
    from gateway.app import create_app
    from gateway.devstack import free_port
    from tests.conftest import make_config

    config = make_config(backends, s3_endpoint_url=f"http://127.0.0.1:{free_port()}")
    client = await aiohttp_client(create_app(config))
    claim = await new_claim(client, project)
    started = asyncio.get_running_loop().time()
    resp = await publish(client, project, lease(claim))
    assert resp.status == 503
    assert (await resp.json())["code"] == "unavailable"
    assert asyncio.get_running_loop().time() - started < 15
    assert await db.fetchval("SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 0
