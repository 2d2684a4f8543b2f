"""Slow uploads of one tenant cannot stall the large uploads of the others.

A client that sends a few hundred KiB and then drips holds a part buffer; before
the minimum body rate, the bounded buffer wait and the per-credential share,
twice as many drippers as buffers took the whole budget and every other large
upload waited behind them for as long as they cared to drip.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import time

from aiohttp.test_utils import TestClient

from gateway.api.state import STORE
from gateway.app import create_app
from storage import S3ObjectStore
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
