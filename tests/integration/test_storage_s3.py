"""S3ObjectStore against the real SeaweedFS S3 server of the test session.

Uploads go through :func:`storage.upload`, the destination every publish uses;
the size limit itself is tested in ``test_storage_destination.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from gateway.devstack import free_port
from storage import (
    ObjectNotFound,
    RangeNotSatisfiable,
    S3ObjectStore,
    S3Settings,
    StorageBusy,
    StorageUnavailable,
    upload,
)

MiB = 1024 * 1024
PART = 5 * MiB


class Calls:
    """An observer that records the S3 operations a store made."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, operation: str, seconds: float, ok: bool) -> None:
        assert seconds >= 0
        self.seen.append((operation, ok))

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.seen if name == operation)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def store(settings: S3Settings, calls: Calls) -> AsyncIterator[S3ObjectStore]:
    async with S3ObjectStore.connect(settings, observer=calls) as store:
        yield store


async def chunked(data: bytes, size: int = 100_003) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]
        await asyncio.sleep(0)


async def failing_after(data: bytes, limit: int) -> AsyncIterator[bytes]:
    async for chunk in chunked(data[:limit]):
        yield chunk
    raise RuntimeError("client went away")


async def read_all(store: S3ObjectStore, key: str) -> bytes:
    async with await store.open_range(key) as reader:
        return b"".join([chunk async for chunk in reader.iter_chunks(64 * 1024)])


async def exists(store: S3ObjectStore, key: str) -> bool:
    try:
        reader = await store.open_range(key)
    except ObjectNotFound:
        return False
    await reader.close()
    return True


async def assert_nothing_left(store: S3ObjectStore, prefix: str) -> None:
    assert [info async for info in store.list_objects(prefix)] == []
    assert await store.list_incomplete_uploads(prefix) == []


async def test_payloads_are_not_hashed_by_botocore(store: S3ObjectStore, prefix: str) -> None:
    sent: list[tuple[str, dict[str, str], str]] = []

    def record(request: Any, **_: Any) -> None:
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        sent.append((request.method, headers, type(request.body).__name__))

    store.client.meta.events.register("before-send.s3", record)
    try:
        await upload(store, prefix + "s", chunked(b"small"), max_bytes=10)
        await upload(store, prefix + "l", chunked(os.urandom(6 * MiB)), max_bytes=10 * MiB)
    finally:
        store.client.meta.events.unregister("before-send.s3", record)
    puts = [(headers, body) for method, headers, body in sent if method == "PUT"]
    # The small object went through storage.lean (its own test file).
    assert [body for _, body in puts] == ["BufferBody", "BufferBody"]
    for headers, _ in puts:
        assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert not [name for name in headers if name.startswith(("x-amz-checksum", "content-md5"))]


async def test_ping(store: S3ObjectStore, calls: Calls) -> None:
    await store.ping()
    assert calls.seen == [("head_bucket", True)]
    assert store.backend_name == "s3"


async def test_small_stream_is_one_put_object(
    store: S3ObjectStore, calls: Calls, prefix: str
) -> None:
    data = os.urandom(10_000)
    key = prefix + "small"
    stored = await upload(store, key, chunked(data, 3000), max_bytes=10_000)
    assert stored.key == key and stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.head == data[:4096]
    assert [name for name, _ in calls.seen] == ["put_object"]
    assert store.pool.in_use == 0
    assert await read_all(store, key) == data


async def test_empty_stream(store: S3ObjectStore, prefix: str) -> None:
    stored = await upload(store, prefix + "empty", chunked(b""), max_bytes=0)
    assert stored.size == 0 and stored.head == b""
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    async with await store.open_range(prefix + "empty") as reader:
        assert reader.content_length == 0 and reader.total_size == 0
        assert [chunk async for chunk in reader.iter_chunks()] == []


async def test_stream_of_exactly_one_part_is_one_put_object(
    store: S3ObjectStore, calls: Calls, prefix: str
) -> None:
    data = os.urandom(PART)
    stored = await upload(store, prefix + "one-part", chunked(data), max_bytes=PART)
    assert stored.size == PART
    assert [name for name, _ in calls.seen] == ["put_object"]
    assert await read_all(store, prefix + "one-part") == data


async def test_large_stream_is_a_multipart_upload(
    store: S3ObjectStore, calls: Calls, prefix: str
) -> None:
    data = os.urandom(12 * MiB + 12_345)
    key = prefix + "large.bin"
    started: list[str] = []

    async def on_started(upload_id: str) -> None:
        started.append(upload_id)

    stored = await upload(
        store,
        key,
        chunked(data),
        max_bytes=64 * MiB,
        content_type="application/x-test",
        on_multipart_started=on_started,
    )
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.head == data[:4096]
    assert len(started) == 1 and started[0]
    assert calls.count("create_multipart_upload") == 1
    assert calls.count("upload_part") == 3
    assert calls.count("complete_multipart_upload") == 1
    assert calls.count("put_object") == 0
    assert all(ok for _, ok in calls.seen)
    assert store.pool.in_use == 0
    assert await store.list_incomplete_uploads(prefix) == []
    assert await read_all(store, key) == data


async def test_concurrent_uploads_share_a_small_budget(settings: S3Settings, prefix: str) -> None:
    tight = replace(settings, buffer_budget_bytes=2 * PART, part_concurrency=2)
    payloads = [os.urandom(11 * MiB + n) for n in range(3)]
    peak = 0

    async with S3ObjectStore.connect(tight) as store:

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, store.pool.in_use)
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        try:
            results = await asyncio.gather(
                *(
                    upload(store, f"{prefix}{n}", chunked(data), max_bytes=32 * MiB)
                    for n, data in enumerate(payloads)
                )
            )
        finally:
            watcher.cancel()
        assert peak <= 2
        assert store.pool.in_use == 0
        for n, (stored, data) in enumerate(zip(results, payloads, strict=True)):
            assert stored.sha256 == hashlib.sha256(data).hexdigest()
            assert await read_all(store, f"{prefix}{n}") == data


async def test_failing_chunk_iterator_aborts_the_upload(
    store: S3ObjectStore, calls: Calls, prefix: str
) -> None:
    data = os.urandom(12 * MiB)
    with pytest.raises(RuntimeError, match="client went away"):
        await upload(store, prefix + "f", failing_after(data, 11 * MiB), max_bytes=64 * MiB)
    assert calls.count("create_multipart_upload") == 1
    assert calls.count("abort_multipart_upload") == 1
    assert store.pool.in_use == 0
    await assert_nothing_left(store, prefix)


async def test_failing_small_stream_stores_nothing(store: S3ObjectStore, prefix: str) -> None:
    with pytest.raises(RuntimeError):
        await upload(store, prefix + "f", failing_after(os.urandom(5000), 3000), max_bytes=10**6)
    await assert_nothing_left(store, prefix)


async def test_cancelled_upload_is_aborted(store: S3ObjectStore, calls: Calls, prefix: str) -> None:
    started = asyncio.Event()
    upload_ids: list[str] = []

    async def stalls_after_two_parts() -> AsyncIterator[bytes]:
        async for chunk in chunked(os.urandom(11 * MiB)):
            yield chunk
        await asyncio.Event().wait()  # the client stops sending

    async def on_started(upload_id: str) -> None:
        upload_ids.append(upload_id)
        started.set()

    task = asyncio.create_task(
        upload(
            store,
            prefix + "c",
            stalls_after_two_parts(),
            max_bytes=64 * MiB,
            on_multipart_started=on_started,
        )
    )
    await asyncio.wait_for(started.wait(), 20)
    deadline = time.monotonic() + 20
    while calls.count("upload_part") < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    incomplete = await store.list_incomplete_uploads(prefix)
    assert [(u.key, u.upload_id) for u in incomplete] == [(prefix + "c", upload_ids[0])]
    assert incomplete[0].initiated.tzinfo is not None

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls.count("abort_multipart_upload") == 1
    assert store.pool.in_use == 0
    await assert_nothing_left(store, prefix)


async def test_cancelled_with_parts_in_flight_is_aborted(
    store: S3ObjectStore, calls: Calls, prefix: str
) -> None:
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        block = os.urandom(256 * 1024)
        while True:
            yield block
            await asyncio.sleep(0)

    async def on_started(upload_id: str) -> None:
        started.set()

    task = asyncio.create_task(
        upload(
            store, prefix + "e", endless(), max_bytes=1024 * MiB, on_multipart_started=on_started
        )
    )
    await asyncio.wait_for(started.wait(), 20)
    await asyncio.sleep(0.02)  # the first part is on the wire
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls.count("abort_multipart_upload") == 1
    assert store.pool.in_use == 0
    await assert_nothing_left(store, prefix)


async def test_cancelled_while_waiting_for_budget_releases_everything(
    settings: S3Settings, prefix: str
) -> None:
    tight = replace(settings, buffer_budget_bytes=PART)
    async with S3ObjectStore.connect(tight) as store:
        gate = asyncio.Event()

        async def holds_the_only_buffer() -> AsyncIterator[bytes]:
            yield os.urandom(1 * MiB)  # beyond the staging area: takes the buffer
            await gate.wait()

        holder = asyncio.create_task(
            upload(store, prefix + "holder", holds_the_only_buffer(), max_bytes=PART)
        )
        waiter = asyncio.create_task(
            upload(store, prefix + "waiter", chunked(os.urandom(MiB)), max_bytes=PART)
        )
        deadline = time.monotonic() + 5
        while store.pool.waiting < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert store.pool.in_use == 1 and store.pool.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.set()
        stored = await holder
        assert stored.size == MiB
        assert store.pool.in_use == 0 and store.pool.waiting == 0
    assert [info.key async for info in store_list(tight, prefix)] == [prefix + "holder"]


async def test_an_owner_over_its_share_waits_a_bounded_time_while_others_upload(
    settings: S3Settings, prefix: str
) -> None:
    tight = replace(
        settings, buffer_budget_bytes=4 * PART, buffer_owner_share=0.5, buffer_wait_seconds=0.3
    )
    async with S3ObjectStore.connect(tight) as store:
        gate = asyncio.Event()

        async def holds_a_buffer() -> AsyncIterator[bytes]:
            yield os.urandom(1 * MiB)  # beyond the staging area: takes a buffer
            await gate.wait()

        holders = [
            asyncio.create_task(
                upload(store, f"{prefix}a{n}", holds_a_buffer(), max_bytes=PART, owner="a")
            )
            for n in range(2)
        ]
        deadline = time.monotonic() + 5
        while store.pool.held_by("a") < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert store.pool.held_by("a") == 2
        with pytest.raises(StorageBusy) as info:
            await upload(
                store, prefix + "a-more", chunked(os.urandom(2 * MiB)), max_bytes=PART, owner="a"
            )
        assert info.value.own_share
        other = await upload(
            store, prefix + "b", chunked(os.urandom(PART + MiB)), max_bytes=2 * PART, owner="b"
        )
        assert other.size == PART + MiB
        gate.set()
        assert [(await holder).size for holder in holders] == [MiB, MiB]
        assert store.pool.in_use == 0 and store.pool.waiting == 0
        keys = [info.key async for info in store.list_objects(prefix)]
        assert keys == [prefix + "a0", prefix + "a1", prefix + "b"]
        assert await store.list_incomplete_uploads(prefix) == []


async def test_waiting_for_its_own_slow_parts_is_not_a_pool_timeout(
    settings: S3Settings, prefix: str
) -> None:
    """At its share with parts in flight, an upload waits for the store, not the pool."""
    tight = replace(
        settings, buffer_budget_bytes=2 * PART, buffer_owner_share=0.5, buffer_wait_seconds=0.3
    )
    async with S3ObjectStore.connect(tight) as store:

        async def slow_part(**_: Any) -> None:
            await asyncio.sleep(1.0)  # each part takes longer than the pool's wait limit

        store.client.meta.events.register("before-send.s3.UploadPart", slow_part)
        data = os.urandom(2 * PART + MiB)
        stored = await upload(
            store, prefix + "slow-parts", chunked(data), max_bytes=3 * PART, owner="a"
        )
        assert stored.size == len(data)
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert store.pool.in_use == 0 and store.pool.waiting == 0


async def store_list(settings: S3Settings, prefix: str) -> AsyncIterator[object]:
    async with S3ObjectStore.connect(settings) as store:
        async for info in store.list_objects(prefix):
            yield info


@pytest.fixture
async def thousand(store: S3ObjectStore, prefix: str) -> tuple[str, bytes]:
    data = bytes(range(256)) * 3 + os.urandom(232)
    assert len(data) == 1000
    await upload(store, prefix + "thousand", chunked(data), max_bytes=1000)
    return prefix + "thousand", data


async def test_open_range_whole_object(store: S3ObjectStore, thousand: tuple[str, bytes]) -> None:
    key, data = thousand
    async with await store.open_range(key) as reader:
        assert reader.content_length == 1000 and reader.total_size == 1000
        assert reader.content_range is None
        chunks = [chunk async for chunk in reader.iter_chunks(300)]
    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= 300


@pytest.mark.parametrize(
    ("start", "end", "suffix", "first", "last"),
    [(10, 19, None, 10, 19), (990, None, None, 990, 999), (None, None, 5, 995, 999)],
    ids=["a-b", "a-", "-n"],
)
async def test_open_range_parts(
    store: S3ObjectStore,
    thousand: tuple[str, bytes],
    start: int | None,
    end: int | None,
    suffix: int | None,
    first: int,
    last: int,
) -> None:
    key, data = thousand
    async with await store.open_range(key, start, end, suffix_length=suffix) as reader:
        assert reader.content_length == last - first + 1
        assert reader.total_size == 1000
        assert reader.content_range == f"bytes {first}-{last}/1000"
        body = b"".join([chunk async for chunk in reader.iter_chunks()])
    assert body == data[first : last + 1]


async def test_open_range_end_beyond_the_object_is_clamped(
    store: S3ObjectStore, thousand: tuple[str, bytes]
) -> None:
    key, data = thousand
    async with await store.open_range(key, 900, 5000) as reader:
        assert reader.content_range == "bytes 900-999/1000"
        assert b"".join([chunk async for chunk in reader.iter_chunks()]) == data[900:]


async def test_unsatisfiable_range(store: S3ObjectStore, thousand: tuple[str, bytes]) -> None:
    key, _ = thousand
    with pytest.raises(RangeNotSatisfiable) as caught:
        await store.open_range(key, 1000)
    assert caught.value.size == 1000


async def test_reader_closed_early_frees_its_connection(store: S3ObjectStore, prefix: str) -> None:
    data = os.urandom(3 * MiB)
    await upload(store, prefix + "partial", chunked(data), max_bytes=len(data))
    for _ in range(3):
        reader = await store.open_range(prefix + "partial")
        async for chunk in reader.iter_chunks(1024):
            assert chunk == data[: len(chunk)]
            break
        await reader.close()
        await reader.close()
    assert await read_all(store, prefix + "partial") == data


async def test_missing_key(store: S3ObjectStore, calls: Calls, prefix: str) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        await store.open_range(prefix + "missing")
    assert caught.value.key == prefix + "missing"
    assert calls.seen == [("get_object", True)]


async def test_delete_is_idempotent(store: S3ObjectStore, prefix: str) -> None:
    await upload(store, prefix + "d", chunked(b"bye"), max_bytes=3)
    assert await exists(store, prefix + "d")
    await store.delete(prefix + "d")
    await store.delete(prefix + "d")
    assert not await exists(store, prefix + "d")


async def test_abort_of_an_unknown_upload_is_fine(store: S3ObjectStore, prefix: str) -> None:
    await store.abort_multipart(prefix + "nothing", "no-such-upload")


async def test_list_objects_pages(store: S3ObjectStore, calls: Calls, prefix: str) -> None:
    keys = [f"{prefix}obj-{n:02d}" for n in range(7)]
    for n, key in enumerate(keys):
        await upload(store, key, chunked(b"x" * n), max_bytes=100)
    await upload(store, prefix[:-1] + "-sibling", chunked(b"no"), max_bytes=100)
    listed = [info async for info in store.list_objects(prefix, page_size=3)]
    assert [info.key for info in listed] == keys
    assert [info.size for info in listed] == list(range(7))
    assert all(info.last_modified.tzinfo is not None for info in listed)
    assert calls.count("list_objects_v2") == 3
    await store.delete(prefix[:-1] + "-sibling")


async def test_unreachable_endpoint_fails_fast(settings: S3Settings, prefix: str) -> None:
    closed = replace(settings, endpoint_url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2.0)
    calls = Calls()
    async with S3ObjectStore.connect(closed, observer=calls) as store:
        began = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught:
            await store.ping()
        assert caught.value.operation == "head_bucket"
        assert time.monotonic() - began < 3

        began = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await upload(store, prefix + "x", chunked(b"data"), max_bytes=10)
        assert time.monotonic() - began < 3

        began = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught:
            await upload(store, prefix + "y", chunked(os.urandom(6 * MiB)), max_bytes=10 * MiB)
        assert caught.value.operation == "create_multipart_upload"
        assert time.monotonic() - began < 3
        assert store.pool.in_use == 0
    assert ("head_bucket", False) in calls.seen
    assert ("put_object", False) in calls.seen
