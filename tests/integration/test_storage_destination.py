"""The upload destination (:func:`storage.upload`) over the real S3 store: the size limit.

Hashing, counting and the head over any store are in ``tests/unit/test_storage_destination.py``;
here the limit meets S3: whatever the store had started is undone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from storage import EntityTooLarge, S3ObjectStore, S3Settings, upload
from tests.integration.test_storage_s3 import Calls, assert_nothing_left, chunked

MiB = 1024 * 1024


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def store(settings: S3Settings, calls: Calls) -> AsyncIterator[S3ObjectStore]:
    async with S3ObjectStore.connect(settings, observer=calls) as store:
        yield store


async def test_too_large_small_stream_stores_nothing(store: S3ObjectStore, prefix: str) -> None:
    with pytest.raises(EntityTooLarge) as caught:
        await upload(store, prefix + "x", chunked(os.urandom(1000), 300), max_bytes=999)
    assert caught.value.limit == 999
    await assert_nothing_left(store, prefix)


async def test_too_large_multipart_stream_is_aborted(
    store: S3ObjectStore, calls: Calls, prefix: str
) -> None:
    started: list[str] = []

    async def on_started(upload_id: str) -> None:
        started.append(upload_id)

    with pytest.raises(EntityTooLarge):
        await upload(
            store,
            prefix + "big",
            chunked(os.urandom(12 * MiB)),
            max_bytes=7 * MiB,
            on_multipart_started=on_started,
        )
    assert len(started) == 1
    assert calls.count("abort_multipart_upload") == 1
    assert store.pool.in_use == 0
    await assert_nothing_left(store, prefix)


async def test_a_limit_beyond_what_s3_can_hold_is_refused_before_any_call(
    store: S3ObjectStore, calls: Calls, prefix: str
) -> None:
    too_many = store.settings.part_size * 10_000 + 1
    with pytest.raises(ValueError, match="parts of"):
        await upload(store, prefix + "huge", chunked(b"x"), max_bytes=too_many)
    assert calls.seen == []
