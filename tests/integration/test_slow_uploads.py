"""Slow uploads of one tenant cannot stall the large uploads of the others.

A client that sends a few hundred KiB and then drips holds a part buffer; before
the minimum body rate, the bounded buffer wait and the per-credential share,
twice as many drippers as buffers took the whole budget and every other large
upload waited behind them for as long as they cared to drip. Drippers of
several credentials that stay above the minimum rate still held every buffer
between them until a buffer left unfilled for ``GATEWAY_S3_BUFFER_FILL_SECONDS``
while others wait was taken back from its upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from gateway.api.state import STORE
from gateway.app import create_app
from storage import S3ObjectStore, S3Settings, UploadTooSlow, upload
from tests.conftest import bearer, make_config, principal_token
from tests.helpers import new_claim, publish
from tests.integration.test_hostile import multipart_head, status_of
from tests.integration.test_publish import assert_nothing_published

KiB = 1024
MiB = 1024 * KiB
PART = 5 * MiB
BUFFERS = 4


async def drip(client: TestClient, project: str, token: str) -> bytes:
    """Send 300 KiB of a file part (enough to take a part buffer), then 64 bytes
    every 0.25 s until the gateway answers; return the answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        head = multipart_head(project, token, "XyZ", 10 * MiB)
        part = (
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
        writer.write(head + part + os.urandom(300 * KiB))
        await writer.drain()
        answer = asyncio.ensure_future(reader.read(65536))
        try:
            async with asyncio.timeout(60):
                while not answer.done():
                    with contextlib.suppress(ConnectionError):
                        writer.write(os.urandom(64))
                        await writer.drain()
                    await asyncio.wait({answer}, timeout=0.25)
        finally:
            answer.cancel()
        return answer.result()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_drippers_of_one_credential_do_not_stall_another_project(
    aiohttp_client, backends, project, db
) -> None:
    config = make_config(
        backends,
        s3_part_size=PART,
        s3_part_concurrency=2,
        s3_buffer_budget_bytes=BUFFERS * PART,
        s3_buffer_share=0.5,
        s3_buffer_wait_seconds=4.0,
        body_min_rate_window_seconds=1.0,
    )
    assert config.body_min_rate_bytes_per_second == 1024  # the default; drips send 256 B/s
    client = await aiohttp_client(create_app(config))
    store = client.app[STORE]
    assert isinstance(store, S3ObjectStore)
    claim = await new_claim(client, project)
    drippers = [
        asyncio.create_task(drip(client, project, claim["lease_token"])) for _ in range(2 * BUFFERS)
    ]
    # The drippers' credential holds its share (half the buffers); the rest of
    # them queue against that share.
    async with asyncio.timeout(15):
        while store.pool.held_by(f"lease:{claim['lease_id']}") < BUFFERS // 2:
            await asyncio.sleep(0.02)
    assert store.pool.waiting >= 1

    other = "prj-" + secrets.token_hex(6)
    data = os.urandom(20 * MiB)
    writer = bearer(principal_token("user:fast", "artifacts:read artifacts:write"))
    started = time.monotonic()
    resp = await publish(client, other, writer, data, filename="big.bin")
    elapsed = time.monotonic() - started
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["sha256"] == hashlib.sha256(data).hexdigest()
    assert elapsed < 20  # a liveness bound, not a benchmark

    answers = await asyncio.gather(*drippers)
    statuses = [status_of(answer) for answer in answers]
    assert set(statuses) <= {408, 503}, answers
    assert 408 in statuses  # those that held a buffer were cut off for their rate
    for answer in answers:
        if status_of(answer) == 408:
            assert b'"code": "body_too_slow"' in answer
        else:
            assert b'"code": "unavailable"' in answer
            assert b"retry-after:" in answer.lower()
    await assert_nothing_published(store, db, project)
    assert store.pool.in_use == 0 and store.pool.waiting == 0


def _head(project: str, auth: str, boundary: str, length: int) -> bytes:
    lines = [
        f"POST /v1/projects/{project}/artifacts HTTP/1.1",
        "Host: localhost",
        auth,
        f"Content-Type: multipart/form-data; boundary={boundary}",
        "Connection: close",
        f"Content-Length: {length}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def steady_drip(
    client: TestClient, project: str, auth: str, stop: asyncio.Event, *, burst: int = 600 * KiB
) -> bytes | None:
    """Declare a 1 GiB body, send ``burst`` bytes of its file, then 512 bytes every
    0.25 s (2 KiB/s, twice the minimum rate) until the gateway answers (its answer
    is returned) or ``stop`` is set (the connection is closed; ``None``)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        part = (
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="drip.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
        writer.write(_head(project, auth, "XyZ", 1024 * MiB) + part + os.urandom(burst))
        await writer.drain()
        answer = asyncio.ensure_future(reader.read(65536))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            async with asyncio.timeout(120):
                while not answer.done() and not stop.is_set():
                    with contextlib.suppress(ConnectionError):
                        writer.write(os.urandom(512))
                        await writer.drain()
                    await asyncio.wait({answer, stopped}, timeout=0.25)
        finally:
            stopped.cancel()
            answered = answer.done()
            if not answered:
                answer.cancel()
        return answer.result() if answered else None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_steady_drippers_of_several_credentials_leave_buffers_to_fast_uploads(
    aiohttp_client, backends, db
) -> None:
    """Four uploads of three credentials in three projects hold every part buffer,
    dripping above the minimum rate; two 20 MiB uploads of two other projects still
    get buffers (those not filled in time are taken back) and are stored well within
    the buffer wait. A taken-back dripper whose bytes do not fit the staging budget
    ends with 408 body_too_slow; the others are closed by their clients; none of
    them leaves an artifact, an object, an upload or a quota charge."""
    fill, wait = 2.0, 10.0
    config = make_config(
        backends,
        s3_part_size=PART,
        s3_part_concurrency=2,
        s3_buffer_budget_bytes=BUFFERS * PART,
        s3_buffer_share=0.5,
        s3_buffer_wait_seconds=wait,
        s3_buffer_fill_seconds=fill,
        s3_staging_budget_bytes=MiB,  # one 600 KiB dripper fits, not two
    )
    assert config.body_min_rate_bytes_per_second == 1024  # the drips send 2 KiB/s
    client = await aiohttp_client(create_app(config))
    store = client.app[STORE]
    assert isinstance(store, S3ObjectStore)
    projects = ["prj-" + secrets.token_hex(6) for _ in range(3)]
    claims = [await new_claim(client, p) for p in projects[:2]]
    dripper = bearer(principal_token("user:dripper", "artifacts:read artifacts:write"))
    auths = [
        (projects[0], f"X-Mobius-Lease-Token: {claims[0]['lease_token']}"),
        (projects[0], f"X-Mobius-Lease-Token: {claims[0]['lease_token']}"),
        (projects[1], f"X-Mobius-Lease-Token: {claims[1]['lease_token']}"),
        (projects[2], f"Authorization: {dripper['Authorization']}"),
    ]
    stop = asyncio.Event()
    drippers = [
        asyncio.create_task(steady_drip(client, project, auth, stop)) for project, auth in auths
    ]
    async with asyncio.timeout(15):
        while store.pool.in_use < BUFFERS:
            await asyncio.sleep(0.01)
    assert store.pool.reclaimed == 0  # nobody waited: nothing was taken back

    async def fast_upload(user: str) -> float:
        data = os.urandom(20 * MiB)
        writer = bearer(principal_token(user, "artifacts:read artifacts:write"))
        started = time.monotonic()
        resp = await publish(client, "prj-" + secrets.token_hex(6), writer, data, filename="b")
        elapsed = time.monotonic() - started
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["sha256"] == hashlib.sha256(data).hexdigest()
        return elapsed

    elapsed = await asyncio.gather(fast_upload("user:fast"), fast_upload("user:quick"))
    # Neither waited out the buffer wait (that is a 503): at most about one fill time.
    assert max(elapsed) < wait, f"fast 20 MiB uploads beside 4 drippers took {elapsed} s"
    assert store.pool.reclaimed >= 2

    async with asyncio.timeout(15):  # a refused dripper gets its answer at its next drip
        while not any(t.done() for t in drippers):
            await asyncio.sleep(0.05)
    assert store.staging.refused >= 1
    assert 0 < store.staging.in_use <= store.staging.capacity  # one goes on, staged
    stop.set()
    answers = await asyncio.gather(*drippers)
    refused = [answer for answer in answers if answer is not None]
    assert 1 <= len(refused) < len(answers), answers
    for answer in refused:
        assert status_of(answer) == 408, answer
        assert b'"code": "body_too_slow"' in answer
        assert b"upload buffer" in answer
    async with asyncio.timeout(15):  # the closed ones are aborted as their reads fail
        while store.staging.in_use or store.pool.in_use:
            await asyncio.sleep(0.05)
    for project in projects:
        await assert_nothing_published(store, db, project)
    assert store.pool.waiting == 0


async def _parts(data: bytes, gate: asyncio.Event, first: int) -> AsyncIterator[bytes]:
    """``data[:first]``, then (once ``gate`` is set) the rest in 256 KiB chunks."""
    yield data[:first]
    if first < len(data):
        await gate.wait()
    for offset in range(first, len(data), 256 * KiB):
        yield data[offset : offset + 256 * KiB]


@pytest.mark.parametrize(
    "size", [2 * MiB, PART, 2 * PART + MiB], ids=["one-put", "exactly-a-part", "multipart"]
)
async def test_an_upload_whose_buffer_was_taken_back_stores_exactly_its_bytes(
    settings: S3Settings, prefix: str, size: int
) -> None:
    """The slow upload's bytes move to its staging area, the waiting upload gets the
    buffer, and the slow one, once its client speeds up, stores every byte: as one
    PutObject from the staging area, or its staged part followed by pooled parts."""
    tight = replace(
        settings, buffer_budget_bytes=PART, buffer_fill_seconds=0.2, buffer_wait_seconds=5.0
    )
    async with S3ObjectStore.connect(tight) as store:
        data, gate = os.urandom(size), asyncio.Event()
        slow = asyncio.create_task(
            upload(store, prefix + "slow", _parts(data, gate, MiB), max_bytes=size, owner="a")
        )
        async with asyncio.timeout(5):
            while store.pool.in_use < 1:
                await asyncio.sleep(0.01)
        other = os.urandom(PART + MiB)
        stored = await upload(
            store,
            prefix + "other",
            _parts(other, asyncio.Event(), len(other)),
            max_bytes=2 * PART,
            owner="b",
        )
        assert stored.sha256 == hashlib.sha256(other).hexdigest()
        assert store.pool.reclaimed == 1 and store.staging.in_use == MiB
        gate.set()
        result = await slow
        assert (result.size, result.sha256) == (size, hashlib.sha256(data).hexdigest())
        async with await store.open_range(prefix + "slow") as reader:
            assert b"".join([c async for c in reader.iter_chunks()]) == data
        assert store.staging.in_use == 0 and store.pool.in_use == 0
        assert await store.list_incomplete_uploads(prefix) == []


async def test_a_taken_back_upload_that_does_not_fit_the_staging_budget_is_refused(
    settings: S3Settings, prefix: str
) -> None:
    tight = replace(
        settings,
        buffer_budget_bytes=PART,
        buffer_fill_seconds=0.2,
        buffer_wait_seconds=5.0,
        staging_budget_bytes=512 * KiB,
    )
    async with S3ObjectStore.connect(tight) as store:
        data, gate = os.urandom(2 * PART), asyncio.Event()
        slow = asyncio.create_task(
            upload(store, prefix + "slow", _parts(data, gate, MiB), max_bytes=len(data), owner="a")
        )
        async with asyncio.timeout(5):
            while store.pool.in_use < 1:
                await asyncio.sleep(0.01)
        other = os.urandom(MiB)
        await upload(store, prefix + "other", _parts(other, gate, len(other)), max_bytes=MiB)
        gate.set()
        with pytest.raises(UploadTooSlow) as info:
            await slow
        assert (info.value.fill_seconds, info.value.staging_bytes) == (0.2, 512 * KiB)
        assert store.staging.refused == 1 and store.staging.in_use == 0
        assert store.pool.in_use == 0 and store.pool.waiting == 0
        assert [o.key async for o in store.list_objects(prefix)] == [prefix + "other"]
        assert await store.list_incomplete_uploads(prefix) == []
