"""The upload destination (:func:`storage.upload`) over a store that only keeps what it is given.

The destination owns counting, the size limit, sha256 and the head; these tests
watch what it hands to a store. The store here is the smallest
:class:`~storage.ObjectUpload` there is (a list of chunks), which is all a
store has to be.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest

from storage import HEAD_BYTES, EntityTooLarge, StoredObject, upload


class ListUpload:
    """Keeps the chunks it is handed; records commit and abort."""

    def __init__(self, fail_on_write: int | None = None, fail_on_commit: bool = False) -> None:
        self.chunks: list[bytes] = []
        self.committed: str | None = None
        self.aborted: bool | None = None  # the ``cancelled`` flag abort was called with
        self._fail_on_write = fail_on_write
        self._fail_on_commit = fail_on_commit

    async def write(self, chunk: bytes) -> None:
        if self._fail_on_write is not None and len(self.chunks) == self._fail_on_write:
            raise OSError("the store went away")
        self.chunks.append(chunk)

    async def commit(self, sha256_hex: str) -> None:
        if self._fail_on_commit:
            raise OSError("the store went away")
        self.committed = sha256_hex

    async def abort(self, *, cancelled: bool) -> None:
        self.aborted = cancelled


class ListStore:
    backend_name = "list"

    def __init__(self, upload: ListUpload | None = None) -> None:
        self.upload = upload or ListUpload()
        self.opened: list[tuple[str, dict[str, object]]] = []

    def new_upload(
        self,
        key: str,
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
        on_multipart_started: Callable[[str], Awaitable[None]] | None = None,
        owner: str | None = None,
    ) -> ListUpload:
        self.opened.append(
            (key, {"max_bytes": max_bytes, "content_type": content_type, "owner": owner})
        )
        return self.upload


async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def put(
    store: ListStore,
    chunks: Iterable[bytes] | AsyncIterator[bytes],
    max_bytes: int,
    key: str = "k",
    **options: Any,
) -> StoredObject:
    source = chunks if isinstance(chunks, AsyncIterator) else stream(chunks)
    # A ListStore has only what the destination calls, not a whole ObjectStore.
    return await upload(store, key, source, max_bytes=max_bytes, **options)  # type: ignore[arg-type]


async def test_size_sha256_and_head_of_exactly_the_bytes_handed_over() -> None:
    chunks = [bytes([n]) * 3000 for n in range(5)]
    data = b"".join(chunks)
    store = ListStore()
    stored = await put(store, chunks, max_bytes=len(data))
    assert stored == StoredObject(
        key="k", size=len(data), sha256=hashlib.sha256(data).hexdigest(), head=data[:HEAD_BYTES]
    )
    assert HEAD_BYTES == 4096
    assert store.upload.committed == stored.sha256
    assert store.upload.aborted is None


async def test_chunks_reach_the_store_as_they_came_and_empty_ones_do_not() -> None:
    chunks = [b"ab", b"", b"cde", b"", b"f"]
    store = ListStore()
    stored = await put(store, chunks, max_bytes=6)
    assert store.upload.chunks == [b"ab", b"cde", b"f"]
    assert all(got is sent for got, sent in zip(store.upload.chunks, chunks[::2], strict=True))
    assert stored.size == 6 and stored.head == b"abcdef"


async def test_the_new_upload_gets_the_key_the_limit_and_the_options() -> None:
    store = ListStore()
    await put(store, [b"x"], 10, "projects/p/a", content_type="text/plain", owner="lease:1")
    assert store.opened == [
        ("projects/p/a", {"max_bytes": 10, "content_type": "text/plain", "owner": "lease:1"})
    ]


async def test_empty_stream() -> None:
    store = ListStore()
    stored = await put(store, [], max_bytes=0)
    assert stored.size == 0 and stored.head == b""
    assert stored.sha256 == hashlib.sha256(b"").hexdigest() == store.upload.committed


async def test_a_stream_of_exactly_the_limit_is_stored() -> None:
    store = ListStore()
    stored = await put(store, [b"12345", b"67890"], max_bytes=10)
    assert stored.size == 10 and store.upload.committed is not None


async def test_the_chunk_that_passes_the_limit_never_reaches_the_store() -> None:
    store = ListStore()
    with pytest.raises(EntityTooLarge) as caught:
        await put(store, [b"12345", b"67890", b"1", b"never read"], max_bytes=10)
    assert caught.value.limit == 10
    assert store.upload.chunks == [b"12345", b"67890"]
    assert store.upload.committed is None
    assert store.upload.aborted is False


async def test_a_negative_limit_is_refused_before_the_store_is_asked() -> None:
    store = ListStore()
    with pytest.raises(ValueError, match="negative"):
        await put(store, [b"x"], max_bytes=-1)
    assert store.opened == []


async def test_a_failing_source_aborts_the_upload() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"abc"
        raise RuntimeError("client went away")

    store = ListStore()
    with pytest.raises(RuntimeError, match="client went away"):
        await put(store, failing(), max_bytes=100)
    assert store.upload.chunks == [b"abc"]
    assert store.upload.committed is None and store.upload.aborted is False


@pytest.mark.parametrize(
    "failing",
    [ListUpload(fail_on_write=1), ListUpload(fail_on_commit=True)],
    ids=["write", "commit"],
)
async def test_a_failing_store_is_aborted(failing: ListUpload) -> None:
    store = ListStore(failing)
    with pytest.raises(OSError, match="the store went away"):
        await put(store, [b"a", b"b"], max_bytes=100)
    assert failing.committed is None and failing.aborted is False


async def test_a_cancelled_upload_is_aborted_as_cancelled() -> None:
    arrived = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"abc"
        arrived.set()
        await asyncio.Event().wait()  # the client stops sending
        yield b"never"

    store = ListStore()
    task = asyncio.create_task(put(store, stalls(), max_bytes=100))
    await asyncio.wait_for(arrived.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.upload.chunks == [b"abc"]
    assert store.upload.committed is None and store.upload.aborted is True
