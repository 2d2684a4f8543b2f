"""The upload destination: what every stored stream goes through, above any store.

:func:`upload` is the one way bytes get into an :class:`~storage.base.ObjectStore`.
It owns everything about a stream that does not depend on where the bytes go:

- **counting**: the size is the number of bytes actually received, never a
  declared length;
- **the hard limit**: a chunk that takes the count past ``max_bytes`` raises
  :class:`~storage.errors.EntityTooLarge` before that chunk is handed to the
  store, so the store never sees a byte beyond the limit;
- **hashing**: one sha256 over exactly the bytes handed to the store;
- **the head**: the first :data:`HEAD_BYTES` bytes, for content sniffing by the
  caller;
- **the lifecycle**: every failure or cancellation, wherever it happens (the
  chunk source, the limit, the store), ends in the upload's
  :meth:`~storage.base.ObjectUpload.abort` before the exception propagates.

The store below it only moves bytes: :meth:`~storage.base.ObjectStore.new_upload`
gives an :class:`~storage.base.ObjectUpload`, which receives each non-empty chunk
as it arrived (the same object, never a copy) and finally
:meth:`~storage.base.ObjectUpload.commit` with the digest, which a store whose
protocol signs or checks payloads may use and any other store ignores.

The loop is the hot path of a publish (one pass per received chunk): it binds
the digest's ``update`` and the upload's ``write`` once, copies nothing but the
head's first bytes, and does its checks with integer arithmetic only.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Final

from storage.base import ObjectStore, ObjectUpload, StoredObject
from storage.errors import EntityTooLarge

#: How many leading bytes of a stream :func:`upload` returns as
#: :attr:`~storage.base.StoredObject.head`, for content sniffing by the caller.
HEAD_BYTES: Final = 4096


async def upload(
    store: ObjectStore,
    key: str,
    chunks: AsyncIterable[bytes],
    *,
    max_bytes: int,
    content_type: str = "application/octet-stream",
    on_multipart_started: Callable[[str], Awaitable[None]] | None = None,
    owner: str | None = None,
) -> StoredObject:
    """Store the bytes of ``chunks`` under ``key`` in ``store``, in bounded memory.

    Raises :class:`~storage.errors.EntityTooLarge` as soon as more than
    ``max_bytes`` arrived (a stream of exactly ``max_bytes`` is stored), and
    :class:`ValueError` for a negative ``max_bytes`` or one the store cannot
    hold. ``content_type``, ``on_multipart_started`` and ``owner`` go to
    :meth:`~storage.base.ObjectStore.new_upload` unchanged. On any failure or
    cancellation nothing stays stored: the upload is aborted before the
    exception propagates. Returns the key, size, sha256 and head of exactly the
    bytes stored.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    target = store.new_upload(
        key,
        max_bytes=max_bytes,
        content_type=content_type,
        on_multipart_started=on_multipart_started,
        owner=owner,
    )
    return await _transfer(target, key, chunks, max_bytes)


async def measure(chunks: AsyncIterable[bytes], *, max_bytes: int) -> StoredObject:
    """Count, limit and hash ``chunks`` exactly as :func:`upload` does, storing nothing.

    For a stream whose bytes are not wanted again (an ``Idempotency-Key`` replay
    proves it is the same file by its digest). The result's ``key`` is empty.
    """
    return await _transfer(_Nowhere(), "", chunks, max_bytes)


class _Nowhere:
    """An upload that keeps nothing."""

    async def write(self, chunk: bytes) -> None:
        pass

    async def commit(self, sha256_hex: str) -> None:
        pass

    async def abort(self, *, cancelled: bool = False) -> None:
        pass


async def _transfer(
    target: ObjectUpload, key: str, chunks: AsyncIterable[bytes], max_bytes: int
) -> StoredObject:
    """The loop: count, limit, hash, keep the head, hand each chunk to ``target``."""
    digest = hashlib.sha256()
    update, write = digest.update, target.write
    size = 0
    head = bytearray()
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > max_bytes:
                raise EntityTooLarge(max_bytes)
            update(chunk)
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            await write(chunk)
        sha256_hex = digest.hexdigest()
        await target.commit(sha256_hex)
    except BaseException as exc:
        await target.abort(cancelled=isinstance(exc, asyncio.CancelledError))
        raise
    return StoredObject(key=key, size=size, sha256=sha256_hex, head=bytes(head))
