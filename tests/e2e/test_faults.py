"""Faults: object storage and Postgres going away and coming back, S3 errors on one
part, a failure between the object write and the commit. Each test owns backends
it may stop, so the rest of the suite is not disturbed."""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.backends import s3_settings
from gateway.devstack import EmbeddedPostgres, EmbeddedSeaweedFS
from gateway.gc import sweep
from gateway.migrate import migrate
from storage import S3ObjectStore
from tests.conftest import Backends, make_config
from tests.helpers import READER, form, lease, new_claim, publish

pytestmark = pytest.mark.timeout(240)
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def own() -> Iterator[Backends]:
    root = Path(tempfile.mkdtemp(prefix="gateway-faults-"))
    postgres = EmbeddedPostgres(root, database="faults", durable=False).start()
    access, secret = "f" + secrets.token_hex(4), secrets.token_hex(16)
    seaweedfs = EmbeddedSeaweedFS(
        root, access_key_id=access, secret_access_key=secret, volume_size_limit_mb=64
    ).start()
    asyncio.run(migrate(postgres.url()))
    try:
        yield Backends(
            postgres.url(), seaweedfs.endpoint_url, access, secret, "artifacts", postgres, seaweedfs
        )
    finally:
        seaweedfs.stop(timeout=3)
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


async def eventually(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():
                return
        except (aiohttp.ClientError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.3)


async def count(backends: Backends, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(backends.database_url)
    try:
        value: int = await conn.fetchval(sql, *args)
        return value
    finally:
        await conn.close()


async def _slow(total: int, delay: float) -> AsyncIterator[bytes]:
    block = os.urandom(MiB)
    for _ in range(total // MiB):
        await asyncio.sleep(delay)
        yield block


async def test_object_storage_down_then_back(aiohttp_client, own, project) -> None:
    client = await aiohttp_client(create_app(make_config(own)))
    claim = await new_claim(client, project)
    assert own.seaweedfs is not None
    await asyncio.to_thread(own.seaweedfs.stop, 3)
    try:
        started = time.monotonic()
        resp = await publish(client, project, lease(claim))
        assert resp.status == 503
        assert (await resp.json())["code"] == "unavailable"
        assert time.monotonic() - started < 15
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"]["object_storage"] != "ok"
        assert (await client.get("/healthz")).status == 200
    finally:
        await asyncio.to_thread(own.seaweedfs.start)

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(ready)
    resp = await publish(client, project, lease(claim))  # recovered without a restart
    assert resp.status == 201
    assert await count(own, "SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 1


async def test_object_storage_dies_mid_upload(aiohttp_client, own, project) -> None:
    config = make_config(own)
    client = await aiohttp_client(create_app(config))
    claim = await new_claim(client, project)
    upload = asyncio.create_task(publish(client, project, lease(claim), _slow(48 * MiB, 0.05)))
    await asyncio.sleep(1.2)  # past the first part: a multipart upload is open
    assert own.seaweedfs is not None
    await asyncio.to_thread(own.seaweedfs.stop, 3)
    try:
        resp = await upload
        assert resp.status == 503
    finally:
        await asyncio.to_thread(own.seaweedfs.start)
    assert await count(own, "SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 0
    used = await count(
        own, "SELECT coalesce(sum(used_bytes), 0) FROM projects WHERE project_id=$1", project
    )
    assert used == 0
    pool = await asyncpg.create_pool(own.database_url, min_size=1, max_size=2)
    try:
        async with S3ObjectStore.connect(s3_settings(config)) as store:

            async def swept() -> bool:
                report = await sweep(pool, store, grace_seconds=0)
                return report.failed == 0

            await eventually(swept)
            assert await store.list_incomplete_uploads(f"projects/{project}/") == []
            assert [o async for o in store.list_objects(f"projects/{project}/")] == []
    finally:
        await pool.close()


async def test_postgres_down_then_back(aiohttp_client, own, project) -> None:
    client = await aiohttp_client(create_app(make_config(own)))
    claim = await new_claim(client, project)
    assert own.postgres is not None
    await asyncio.to_thread(own.postgres.stop)
    try:
        resp = await publish(client, project, lease(claim))
        assert resp.status == 503
        assert (await resp.json())["code"] == "unavailable"
        resp = await client.get(f"/v1/projects/{project}/artifacts", headers=READER)
        assert resp.status == 503
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"]["postgres"] != "ok"
        assert (await client.get("/healthz")).status == 200
    finally:
        await asyncio.to_thread(own.postgres.start)

    async def published() -> bool:
        return (await publish(client, project, lease(claim))).status == 201

    await eventually(published)  # the pool recovers without a restart


async def test_postgres_restart_under_load_answers_503_never_500(
    aiohttp_client, own, project
) -> None:
    """Publishes and reads in flight while Postgres restarts: each answer is a
    success or ``503 unavailable`` with ``Retry-After``, never a 500; every 201
    is durable, nothing else is recorded or charged, and the pool recovers."""
    client = await aiohttp_client(create_app(make_config(own)))
    claim = await new_claim(client, project)
    statuses: collections.Counter[int] = collections.Counter()
    created: set[str] = set()
    unexpected: list[str] = []
    stop = asyncio.Event()

    async def publisher(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                resp = await publish(
                    client,
                    project,
                    lease(claim),
                    f"{i}-{n}".encode() * 100,
                    filename=f"{i}-{n}.txt",
                )
            except aiohttp.ClientError:
                continue
            statuses[resp.status] += 1
            body = await resp.json()
            if resp.status == 201:
                created.add(body["id"])
            elif resp.status != 503 or "Retry-After" not in resp.headers:
                unexpected.append(f"{resp.status} {body}")

    async def reader() -> None:
        while not stop.is_set():
            try:
                resp = await client.get(f"/v1/projects/{project}/artifacts", headers=READER)
            except aiohttp.ClientError:
                continue
            statuses[resp.status] += 1
            if resp.status not in (200, 503):
                unexpected.append(f"{resp.status} {await resp.text()}")
            await resp.release()

    tasks = [asyncio.create_task(publisher(i)) for i in range(6)]
    tasks.append(asyncio.create_task(reader()))
    try:
        await asyncio.sleep(1.5)
        assert own.postgres is not None
        for _ in range(2):  # a restart, then another once the pool has reconnected
            await asyncio.to_thread(own.postgres.stop)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(own.postgres.start)
            await asyncio.sleep(2.0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert not unexpected, unexpected[:5]
    assert statuses[503] > 0 and statuses[201] > 0, statuses

    async def published() -> bool:
        return (await publish(client, project, lease(claim))).status == 201

    await eventually(published)  # the pool recovers without a restart
    rows = await count(
        own, "SELECT count(*) FROM artifacts WHERE project_id=$1 AND state='available'", project
    )
    assert rows == len(created) + 1  # every 201, and the one just made; nothing else
    used = await count(own, "SELECT used_bytes FROM projects WHERE project_id=$1", project)
    sizes = await count(
        own, "SELECT sum(size) FROM artifacts WHERE project_id=$1 AND state='available'", project
    )
    assert used == sizes


async def test_failure_between_write_and_commit(aiohttp_client, own, project) -> None:
    config = make_config(own)
    client = await aiohttp_client(create_app(config))
    claim = await new_claim(client, project)
    conn = await asyncpg.connect(own.database_url)
    function = "fail_" + secrets.token_hex(4)
    try:
        await conn.execute(
            f"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.project_id = '{project}' THEN
                    RAISE EXCEPTION 'injected failure';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER {function} BEFORE INSERT ON artifacts
                FOR EACH ROW EXECUTE FUNCTION {function}();
            """
        )
        for data in (b"small", os.urandom(12 * MiB)):  # single put and multipart
            resp = await publish(client, project, lease(claim), data)
            assert resp.status == 500
            assert (await resp.json())["code"] == "internal_error"
    finally:
        await conn.execute(f"DROP TRIGGER IF EXISTS {function} ON artifacts")
        await conn.execute(f"DROP FUNCTION IF EXISTS {function}()")
        await conn.close()
    async with S3ObjectStore.connect(s3_settings(config)) as store:
        assert [o async for o in store.list_objects(f"projects/{project}/")] == []
        assert await store.list_incomplete_uploads(f"projects/{project}/") == []
    used = await count(
        own, "SELECT coalesce(sum(used_bytes), 0) FROM projects WHERE project_id=$1", project
    )
    assert used == 0
    assert (
        await count(own, "SELECT count(*) FROM pending_uploads WHERE project_id=$1", project) == 0
    )


class FaultProxy:
    """Forwards S3 requests to SeaweedFS, failing every UploadPart of part 2 with a 500."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.failed_parts = 0
        self.aborts = 0
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        if request.method == "PUT" and request.query.get("partNumber") == "2":
            await request.read()
            self.failed_parts += 1
            return web.Response(
                status=500,
                content_type="application/xml",
                text="<Error><Code>InternalError</Code><Message>injected</Message></Error>",
            )
        if request.method == "DELETE" and "uploadId" in request.query:
            self.aborts += 1
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("transfer-encoding", "connection", "expect")
        }
        body = await request.read()
        async with self.session.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            headers=headers,
            data=body,
            skip_auto_headers=("Content-Type",),
        ) as upstream:
            payload = await upstream.read()
            out = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower()
                not in ("transfer-encoding", "connection", "content-length", "content-encoding")
            }
            return web.Response(status=upstream.status, body=payload, headers=out)


async def test_s3_error_on_one_part_aborts_cleanly(
    aiohttp_client, aiohttp_server, own, project
) -> None:
    proxy = FaultProxy(own.s3_endpoint_url)
    app = web.Application(client_max_size=64 * MiB)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        proxy.session = session
        server = await aiohttp_server(app)
        config = make_config(
            own, s3_endpoint_url=str(server.make_url("")).rstrip("/"), s3_part_size=5 * MiB
        )
        client = await aiohttp_client(create_app(config))
        claim = await new_claim(client, project)
        resp = await client.post(
            f"/v1/projects/{project}/artifacts",
            data=form(os.urandom(16 * MiB)),
            headers=lease(claim),
        )
        assert resp.status == 503
        assert proxy.failed_parts >= 1
        assert proxy.aborts >= 1
    async with S3ObjectStore.connect(s3_settings(make_config(own))) as store:
        assert await store.list_incomplete_uploads(f"projects/{project}/") == []
        assert [o async for o in store.list_objects(f"projects/{project}/")] == []
    assert await count(own, "SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 0
