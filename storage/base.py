"""The object storage interface the rest of the gateway depends on.

Who does what on the way in:

- :func:`storage.destination.upload` (above every store) counts the bytes,
  enforces the size limit, hashes them with sha256, keeps the head for content
  sniffing, and aborts the upload on any failure or cancellation. It returns
  the :class:`StoredObject`.
- An :class:`ObjectStore` only moves bytes: :meth:`ObjectStore.new_upload`
  gives an :class:`ObjectUpload` (its upload strategy) that writes the chunks
  it is handed, commits, or undoes what it wrote. It neither hashes, counts
  nor limits; the digest it receives on commit is for protocols that sign or
  check payloads (S3 SigV4).

The read path, the garbage collector's listing and the clean-up calls are the
other operations of :class:`ObjectStore`. The S3 implementation lives in
:mod:`storage.s3`; tests and other backends only have to satisfy these
protocols.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self


@dataclass(frozen=True, kw_only=True)
class StoredObject:
    """An object that :func:`storage.destination.upload` stored completely.

    ``sha256`` is the lowercase hex digest of exactly the ``size`` bytes stored,
    computed while streaming; ``head`` holds the first ``min(size, 4096)`` bytes
    (:data:`storage.destination.HEAD_BYTES`).
    """

    key: str
    size: int
    sha256: str
    head: bytes


@dataclass(frozen=True, kw_only=True)
class ObjectInfo:
    """One entry of :meth:`ObjectStore.list_objects`; ``last_modified`` is in UTC."""

    key: str
    size: int
    last_modified: datetime


@dataclass(frozen=True, kw_only=True)
class IncompleteUpload:
    """A multipart upload that was started and neither completed nor aborted.

    ``initiated`` is in UTC; the garbage collector aborts uploads older than the
    longest publish it allows.
    """

    key: str
    upload_id: str
    initiated: datetime


def format_range(
    start: int | None = None, end: int | None = None, *, suffix_length: int | None = None
) -> str | None:
    """The HTTP ``Range`` header value for a byte range, or ``None`` for the whole object.

    ``start`` and ``end`` are inclusive offsets (``bytes=start-end``); ``end`` may
    be omitted (``bytes=start-``). ``suffix_length`` asks for the last ``n``
    bytes (``bytes=-n``) and excludes the other two. Whether the range fits the
    object is the store's decision (it raises
    :class:`~storage.errors.RangeNotSatisfiable`); this only rejects values no
    ``Range`` header can express, with :class:`ValueError`.
    """
    if suffix_length is not None:
        if start is not None or end is not None:
            raise ValueError("suffix_length excludes start and end")
        if suffix_length < 0:
            raise ValueError("suffix_length must not be negative")
        return f"bytes=-{suffix_length}"
    if start is None:
        if end is not None:
            raise ValueError("end needs a start; use suffix_length for the last bytes")
        return None
    if start < 0:
        raise ValueError("start must not be negative")
    if end is None:
        return f"bytes={start}-"
    if end < start:
        raise ValueError("end must not be before start")
    return f"bytes={start}-{end}"


class ObjectReader(abc.ABC):
    """A stored object (or a range of it) being streamed from the store.

    ``content_length`` is the number of bytes this reader yields, ``total_size``
    the size of the whole object and ``content_range`` the ``Content-Range``
    value the store answered for a ranged read (``None`` for a whole-object
    read). Iterate :meth:`iter_chunks` once; always :meth:`close` the reader (or
    use it as an ``async with`` block) so an unread body releases its
    connection.
    """

    def __init__(self, *, content_length: int, total_size: int, content_range: str | None):
        self.content_length = content_length
        self.total_size = total_size
        self.content_range = content_range

    @abc.abstractmethod
    def iter_chunks(self, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """Yield the body in chunks of at most ``chunk_size`` bytes, then stop."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection; idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class ObjectUpload(Protocol):
    """One object being written: a store's upload strategy, driven by the destination.

    :func:`storage.destination.upload` calls :meth:`write` with each non-empty
    chunk in order, then :meth:`commit` once; after any failure or
    cancellation (one raised by :meth:`write` or :meth:`commit` included) it
    calls :meth:`abort` instead. The upload moves bytes in bounded memory and
    nothing else: the caller has already counted, limited and hashed them.
    """

    async def write(self, chunk: bytes) -> None:
        """Take the next bytes of the object; may wait for memory or the store (back-pressure).

        ``chunk`` is the caller's object, not a copy: an upload that keeps the
        bytes beyond the call copies them.
        """
        ...

    async def commit(self, sha256_hex: str) -> None:
        """Make the object visible under its key with exactly the bytes written.

        ``sha256_hex`` is the digest of those bytes, for a store whose protocol
        signs or verifies payloads; a store that has no use for it ignores it.
        """
        ...

    async def abort(self, *, cancelled: bool) -> None:
        """Undo whatever was written, so nothing stays stored; best effort.

        Runs to its end even if the awaiting task is cancelled meanwhile, and
        raises no storage error. ``cancelled`` says the upload was interrupted
        by cancellation, so a :meth:`commit` that was in flight may have taken
        effect without its answer: the store then removes the object too.
        """
        ...


class ObjectStore(Protocol):
    """Streaming object storage with the operations the gateway needs.

    Uploads go through :func:`storage.destination.upload`, which drives the
    :class:`ObjectUpload` that :meth:`new_upload` returns. ``backend_name`` is
    a low-cardinality label (``"s3"``) for logs and metrics. Every method
    raises only :class:`~storage.errors.StorageError` subclasses (besides
    :class:`ValueError` for arguments no request could carry, and
    cancellation).
    """

    backend_name: str

    def new_upload(
        self,
        key: str,
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
        on_multipart_started: Callable[[str], Awaitable[None]] | None = None,
        owner: str | None = None,
    ) -> ObjectUpload:
        """The upload of one object under ``key``; nothing is sent yet.

        ``max_bytes`` is the most the caller will write (it enforces that
        itself); a store whose layout bounds an object's size raises
        :class:`ValueError` here when it could not hold that many.
        ``on_multipart_started`` is awaited with the upload id when the stream
        turns out to need a multipart upload, so the caller can record it for
        the garbage collector. ``owner`` names who the upload is for (a
        tenant, a credential): a store that shares memory between uploads
        limits what one owner may hold at once, and raises
        :class:`~storage.errors.StorageBusy` from
        :meth:`ObjectUpload.write` when an upload waited too long for its share,
        or :class:`~storage.errors.UploadTooSlow` from :meth:`ObjectUpload.write`
        or :meth:`ObjectUpload.commit` when an upload filled shared memory too
        slowly while others waited and the memory kept for slow uploads ran out.
        """
        ...

    async def open_range(
        self,
        key: str,
        start: int | None = None,
        end: int | None = None,
        *,
        suffix_length: int | None = None,
    ) -> ObjectReader:
        """Open the object, or the byte range :func:`format_range` describes, for streaming.

        Raises :class:`~storage.errors.ObjectNotFound` and
        :class:`~storage.errors.RangeNotSatisfiable`.
        """
        ...

    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing key succeeds."""
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload and free its parts; a missing upload is fine."""
        ...

    async def list_incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        """All multipart uploads under ``prefix`` that are neither completed nor aborted."""
        ...

    def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Iterate over the objects under ``prefix`` in key order, page by page."""
        ...

    async def ping(self) -> None:
        """Check the store answers; raises :class:`~storage.errors.StorageUnavailable`."""
        ...
