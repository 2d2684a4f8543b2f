"""The S3 implementation of :class:`~storage.base.ObjectStore`, on aiobotocore.

Works with AWS S3 and the S3 APIs of SeaweedFS, MinIO, Ceph RGW and R2 (path-style
addressing, SigV4).

This module only speaks S3: it moves bytes. Counting, the size limit, sha256
and the head are :func:`storage.destination.upload`'s, which drives an
:class:`S3Upload` chunk by chunk and aborts it on any failure. What stays here
is what S3 decides: how a stream becomes one ``PutObject`` or a multipart
upload, the part size and the ``MAX_PARTS`` bound on an object's size
(:meth:`S3ObjectStore.new_upload` refuses a ``max_bytes`` beyond it), the
payload digest SigV4 signs, and undoing a failed upload.

Streaming upload (:class:`S3Upload`)
    The first 256 KiB are staged in a small private buffer: a stream that ends
    there is one ``PutObject`` and never touches the shared budget, so small
    publishes do not queue behind large ones. A longer stream is copied into
    preallocated part buffers lent by the store's
    :class:`~storage.buffers.BufferPool`; a stream that ends within the first
    part is still one ``PutObject``, anything longer becomes a multipart
    upload with at most ``part_concurrency`` parts in flight. Memory is
    therefore bounded per upload (in-flight parts plus one filling buffer) and
    per process (``buffer_budget_bytes``): an upload that needs a new buffer
    waits for one, and meanwhile stops reading its client.
    The uploads of one ``owner`` together hold at most ``buffer_owner_share``
    of the budget, and the wait for a buffer held by other uploads is bounded
    (``buffer_wait_seconds``, then :class:`~storage.errors.StorageBusy`); an
    upload with parts in flight first waits for one of those to finish.

    Slow clients: a part buffer an upload is filling is *reclaimable* while the
    upload waits for its client. If it has not been filled and sent within
    ``buffer_fill_seconds`` and another upload waits for a buffer, the pool
    takes it back: the bytes it held are copied into the upload's staging area
    and the buffer goes to the waiter. That upload then keeps the rest of its
    current part in the staging area, every staged byte charged to the
    store's :class:`~storage.buffers.StagingBudget` (``staging_budget_bytes``,
    shared by all such slow uploads), and sends the part from there once it is
    complete (a part upload, or the single PutObject); its next part starts
    on a pooled buffer again. A client that drips therefore holds only the
    bytes it actually sent, not a part buffer, and one that fills buffers in
    time never copies or waits more than before. When the staging budget cannot
    take the bytes, the slow upload is refused with
    :class:`~storage.errors.UploadTooSlow` and aborted; nothing ever waits for
    the staging budget.

    Request bodies: botocore accepts ``bytes``, ``bytearray`` and file-like
    objects (its parameter validation rejects a bare ``memoryview``), and
    aiohttp warns about, and slices a copy of, any ``bytes``/``bytearray`` body
    over 1 MiB. So a staged small object is sent as its ``bytearray`` (by
    :mod:`storage.lean` when it can: one aiohttp request signed by botocore,
    with botocore's whole pipeline as the retry), and a part buffer as a
    :class:`BufferBody`: a read-only ``io.BytesIO`` over the pooled memory whose
    reads return ``memoryview`` slices, which aiohttp writes to the socket in
    256 KiB steps without copying. The buffer is reused only after its request
    completed; after a failed request it is dropped, since the transport may
    still reference it.

    The payload digest: a single small ``PutObject`` sent by :mod:`storage.lean`
    is signed with the sha256 of its body as ``x-amz-content-sha256``, which
    SigV4 needs before the first byte is sent. :meth:`S3Upload.commit` receives
    that digest from the destination, which computed it over the same bytes
    while streaming, instead of hashing the staged body a second time: the
    store stays free of hashing, small publishes pay for one pass over their
    bytes, and an S3 server that checks the header (AWS S3 does) verifies the
    stored bytes against the very digest the gateway records.

Reads (:meth:`S3ObjectStore.open_range`)
    GetObject goes through :mod:`storage.lean` when it can (one aiohttp request
    signed by botocore), and through botocore for anything but a ``200`` or
    ``206``, so a missing key or an unsatisfiable range is reported as always.

    botocore is configured not to hash payloads (``payload_signing_enabled`` off,
    checksums only where an operation requires them): the destination computes
    sha256 once, and the bodies would otherwise be hashed twice more.

Failure handling
    :meth:`S3Upload.abort`, which the destination calls after any exception or
    cancellation, cancels the in-flight part uploads, waits for them and aborts
    the multipart upload, in a separate task the caller's cancellation cannot
    interrupt. A cancellation that arrives while the final ``PutObject`` or
    ``CompleteMultipartUpload`` is on the wire also deletes the key, since the
    store may have committed the object before the answer was lost.

Errors and timeouts
    Every S3 call goes through one helper that bounds it with
    :func:`asyncio.timeout`, translates driver errors into
    :mod:`storage.errors` and reports its duration to an optional observer.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from storage.base import (
    IncompleteUpload,
    ObjectInfo,
    ObjectReader,
    format_range,
)
from storage.buffers import BufferPool, PartBuffer, StagingBudget
from storage.errors import (
    ObjectNotFound,
    RangeNotSatisfiable,
    StorageError,
    StorageUnavailable,
    UploadTooSlow,
)
from storage.lean import LeanS3

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

MiB: Final = 1024 * 1024
#: S3's bounds on a part (every part but the last must be at least the minimum).
MIN_PART_SIZE: Final = 5 * MiB
MAX_PART_SIZE: Final = 5 * 1024 * MiB
#: S3's limit on the number of parts of one multipart upload.
MAX_PARTS: Final = 10_000
#: Bytes staged outside the shared buffer budget before an upload takes a part buffer.
SMALL_OBJECT_BYTES: Final = 256 * 1024
#: botocore's ``max_attempts``: retries after the first try, so 4 attempts in all.
RETRIES: Final = 3
#: Delay before the n-th retry of a refused connection (doubling from here).
UNREACHABLE_RETRY_DELAY: Final = 0.05

#: ``observer(operation, seconds, ok)``: called after every S3 operation.
Observer = Callable[[str, float, bool], None]

# S3 error codes that mean "try again later" rather than "this request is wrong".
_TRANSIENT_CODES: Final = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "OperationAborted",
    }
)
_NOT_FOUND_CODES: Final = frozenset({"NoSuchKey", "NotFound", "404"})
# Everything the drivers raise: botocore's own errors, S3 error answers, and
# the aiohttp / socket / timeout errors that can escape a streaming body read.
_DRIVER_ERRORS: Final = (ClientError, BotoCoreError, aiohttp.ClientError, OSError, TimeoutError)
# ASCII digits (`\d` is any Unicode digit), at most 19: the size fits an int64.
_TOTAL_SIZE = re.compile(r"/([0-9]{1,19})[ \t]*\Z")
_SIZE_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True, kw_only=True)
class S3Settings:
    """Connection and streaming settings of :class:`S3ObjectStore`.

    ``endpoint_url`` is ``None`` for AWS itself. ``access_key_id`` and
    ``secret_access_key`` of ``None`` use botocore's default credential chain.
    ``part_size`` is the multipart part size and the size of each pooled buffer;
    ``part_concurrency`` bounds the parts in flight per upload and
    ``buffer_budget_bytes`` the part buffers of the whole store (rounded down to
    whole buffers). An upload waits at most ``buffer_wait_seconds`` for a buffer
    (``None``: no bound), and the uploads of one owner hold at most
    ``buffer_owner_share`` of the buffers (at least one). A buffer not filled
    within ``buffer_fill_seconds`` while other uploads wait is taken back
    (``None``: never; keep it below ``buffer_wait_seconds``, or a wait may run
    out first), and the uploads whose buffers were taken back keep at most
    ``staging_budget_bytes`` staged between them. ``timeout_seconds``
    bounds connecting and every control call; data calls get ``read_timeout``
    per socket read.
    """

    endpoint_url: str | None
    bucket: str
    region: str
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    part_size: int = 8 * MiB
    part_concurrency: int = 4
    buffer_budget_bytes: int = 128 * MiB
    buffer_wait_seconds: float | None = 10.0
    buffer_owner_share: float = 0.5
    buffer_fill_seconds: float | None = 2.0
    staging_budget_bytes: int = 32 * MiB
    timeout_seconds: float = 10.0
    max_pool_connections: int = 64

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("bucket must not be empty")
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE}")
        if self.part_concurrency < 1:
            raise ValueError("part_concurrency must be at least 1")
        if self.buffer_budget_bytes < self.part_size:
            raise ValueError("buffer_budget_bytes must hold at least one part")
        if self.buffer_wait_seconds is not None and self.buffer_wait_seconds <= 0:
            raise ValueError("buffer_wait_seconds must be positive")
        if not 0 < self.buffer_owner_share <= 1:
            raise ValueError("buffer_owner_share must be above 0 and at most 1")
        if self.buffer_fill_seconds is not None and self.buffer_fill_seconds <= 0:
            raise ValueError("buffer_fill_seconds must be positive")
        if self.staging_budget_bytes < 0:
            raise ValueError("staging_budget_bytes must not be negative")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if self.max_pool_connections < 1:
            raise ValueError("max_pool_connections must be at least 1")

    @property
    def read_timeout(self) -> float:
        """Seconds one socket read may wait: S3 can be slow to answer a large part."""
        return max(60.0, self.timeout_seconds * 6)

    @property
    def buffer_count(self) -> int:
        """How many part buffers the budget holds."""
        return self.buffer_budget_bytes // self.part_size

    @property
    def buffer_owner_limit(self) -> int:
        """How many part buffers the uploads of one owner may hold at once."""
        return max(1, int(self.buffer_count * self.buffer_owner_share))


def client_config(settings: S3Settings) -> Config:
    """The botocore client configuration for ``settings``.

    SigV4 with path-style addressing (what S3-compatible servers expect), no
    payload hashing or request checksums beyond what an operation requires,
    standard-mode retries (3 after the first attempt; :meth:`S3ObjectStore.connect`
    adds :func:`retry_unreachable_quickly` so an unreachable endpoint fails
    fast) and a pool sized for concurrent part uploads.
    """
    return Config(
        signature_version="s3v4",
        region_name=settings.region,
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=settings.timeout_seconds,
        read_timeout=settings.read_timeout,
        retries={"max_attempts": RETRIES, "mode": "standard"},
        max_pool_connections=settings.max_pool_connections,
    )


def retry_unreachable_quickly(
    attempts: int, caught_exception: BaseException | None = None, **_: Any
) -> float | bool | None:
    """A ``needs-retry`` hook: fail fast when the endpoint cannot be reached.

    botocore backs off up to 1, 2 and 4 seconds between attempts, also when
    nobody listens on the endpoint, so a refused connection would take seconds
    to report. This hook, registered ahead of botocore's own, answers first for
    connection failures: a refused connection (or failed DNS lookup) is retried
    after 50, 100 and 200 ms, and a connect timeout, which already waited
    ``timeout_seconds``, is not retried. Every other failure is left to
    botocore (``None``). Returns the delay in seconds, or ``False`` to stop.
    """
    if isinstance(caught_exception, ConnectTimeoutError):
        return False
    if isinstance(caught_exception, EndpointConnectionError):
        if attempts > RETRIES:
            return False
        return float(UNREACHABLE_RETRY_DELAY * 2 ** (attempts - 1))
    return None


def _total_size_from(response: Mapping[str, Any]) -> int | None:
    """The object size an S3 ``InvalidRange`` answer reports, if any."""
    error = response.get("Error") or {}
    actual = error.get("ActualObjectSize")
    if actual is not None and _SIZE_DIGITS.fullmatch(str(actual)):
        return int(actual)
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    match = _TOTAL_SIZE.search(str(headers.get("content-range", "")))
    return int(match.group(1)) if match else None


def translate_error(operation: str, exc: BaseException, *, key: str | None = None) -> StorageError:
    """The domain error for a driver exception raised by ``operation``.

    ``key`` is the object the operation addressed, for :class:`ObjectNotFound`.
    Storage errors pass through unchanged.
    """
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "")
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if key is not None and code in _NOT_FOUND_CODES:
            return ObjectNotFound(key, operation=operation)
        if code == "InvalidRange" or status == 416:
            return RangeNotSatisfiable(_total_size_from(exc.response), operation=operation)
        detail = f"{code} {message}".strip() or str(exc)
        if code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            return StorageUnavailable(operation, detail, code=code or None)
        return StorageError(f"{operation} failed: {detail}", operation=operation, code=code or None)
    transient = (
        BotoConnectionError,
        HTTPClientError,
        IncompleteReadError,
        aiohttp.ClientError,
        OSError,
        TimeoutError,
    )
    if isinstance(exc, transient):
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) and not str(exc):
            detail = "no answer in time"
        return StorageUnavailable(operation, detail, code=type(exc).__name__)
    return StorageError(f"{operation} failed: {exc}", operation=operation, code=type(exc).__name__)


@contextlib.contextmanager
def translated_errors(operation: str, *, key: str | None = None) -> Iterator[None]:
    """Re-raise any driver exception in the block as its :mod:`storage.errors` equivalent."""
    try:
        yield
    except StorageError:
        raise
    except _DRIVER_ERRORS as exc:
        raise translate_error(operation, exc, key=key) from exc


class BufferBody(io.BytesIO):
    """A request body reading from a memoryview without copying it.

    Subclasses :class:`io.BytesIO` so that aiohttp streams it in the event loop
    (``BytesIOPayload``: 256 KiB reads, yielding between them) rather than in a
    thread, and so botocore can take its length and rewind it for a retry. The
    inherited buffer stays empty: every method a reader uses is served from
    ``view``. :meth:`read` returns ``memoryview`` slices; aiohttp's writer,
    :mod:`hashlib` and :mod:`zlib` accept any buffer.
    """

    def __init__(self, view: memoryview):
        super().__init__()
        self._view = view
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int | None = -1, /) -> memoryview:  # type: ignore[override]
        start = self._position
        stop = len(self._view) if size is None or size < 0 else min(len(self._view), start + size)
        self._position = max(start, stop)
        return self._view[start:stop]

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        target = memoryview(buffer).cast("B")
        chunk = self.read(len(target))
        target[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        if whence not in base:
            raise ValueError(f"invalid whence {whence}")
        position = base[whence] + offset
        if position < 0:
            raise ValueError("negative seek position")
        self._position = position
        return position

    def tell(self) -> int:
        return self._position

    def getbuffer(self) -> memoryview:
        return self._view[:]  # a new view: callers release theirs with `with`

    def getvalue(self) -> bytes:
        return bytes(self._view)

    def writable(self) -> bool:
        return False

    def write(self, data: ReadableBuffer, /) -> int:
        raise io.UnsupportedOperation("a request body is read-only")


def _total_size(content_length: int, content_range: str | None) -> int:
    """The whole object's size: from ``Content-Range`` for a ranged read."""
    if content_range:
        match = _TOTAL_SIZE.search(content_range)
        if match:
            return int(match.group(1))
    return content_length


class _ResponseBody:
    """An aiohttp response body with the ``read``/``close`` of a botocore one."""

    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response
        self.read = response.content.read

    def close(self) -> None:
        self._response.close()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class S3ObjectReader(ObjectReader):
    """A ``GetObject`` body being streamed; see :class:`~storage.base.ObjectReader`."""

    def __init__(
        self,
        body: Any,
        *,
        key: str,
        content_length: int,
        total_size: int,
        content_range: str | None,
    ):
        super().__init__(
            content_length=content_length, total_size=total_size, content_range=content_range
        )
        self.key = key
        self._body = body
        self._closed = False

    async def iter_chunks(self, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        while not self._closed:
            # aiohttp's socket read timeout (read_timeout) bounds each read.
            with translated_errors("get_object", key=self.key):
                chunk = await self._body.read(chunk_size)
            if not chunk:
                return
            yield chunk

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._body.close()


class _StagedPart:
    """A complete part kept in an upload's staging area, sent like a :class:`PartBuffer`.

    ``release`` returns its charge to the staging budget (idempotent); the
    bytearray is never reused, so a failed request may keep referencing it.
    """

    __slots__ = ("_budget", "_charged", "view")

    def __init__(self, data: bytearray, budget: StagingBudget, charged: int):
        self.view = memoryview(data)
        self._budget = budget
        self._charged = charged

    def release(self, *, reuse: bool = True) -> None:
        charged, self._charged = self._charged, 0
        if charged:
            self._budget.give_back(charged)


#: What a part upload sends from and releases when done.
_PartBody = PartBuffer | _StagedPart


class _PartUploads:
    """The part uploads of one multipart upload, at most ``concurrency`` in flight."""

    def __init__(self, store: S3ObjectStore, key: str, upload_id: str, concurrency: int):
        self._store = store
        self.key = key
        self.upload_id = upload_id
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._etags: dict[int, str] = {}
        self._failure: BaseException | None = None
        self._next_part = 1

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def submit(self, buffer: _PartBody, length: int) -> None:
        """Upload ``buffer[:length]`` as the next part; owns (and releases) ``buffer``.

        Waits while ``concurrency`` parts are in flight. Raises the error of a
        part that already failed instead of starting another.
        """
        try:
            self._raise_failure()
            await self._slots.acquire()
        except BaseException:
            buffer.release()
            raise
        try:
            self._raise_failure()
        except BaseException:
            self._slots.release()
            buffer.release()
            raise
        part_number, self._next_part = self._next_part, self._next_part + 1
        task = asyncio.create_task(
            self._upload(part_number, buffer, length), name=f"upload_part {part_number}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._part_done)

    async def _upload(self, part_number: int, buffer: _PartBody, length: int) -> None:
        sent = False
        try:
            response = await self._store._call(
                "upload_part",
                timeout=self._store._data_timeout,
                Bucket=self._store.settings.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=part_number,
                Body=BufferBody(buffer.view[:length]),
            )
            self._etags[part_number] = response["ETag"]
            sent = True
        finally:
            # After a failure the HTTP transport may still reference the memory.
            buffer.release(reuse=sent)
            self._slots.release()

    def _part_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._failure is None:
            self._failure = exc

    async def wait_for_one(self) -> None:
        """Wait until one of the parts in flight is done; raise a failure if there is one."""
        if self._tasks and self._failure is None:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        self._raise_failure()

    async def wait(self) -> None:
        """Wait for every submitted part; raise the first failure as soon as it happens."""
        while self._tasks and self._failure is None:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_EXCEPTION)
        self._raise_failure()

    async def cancel(self) -> None:
        """Cancel the parts still in flight and wait until they are gone."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def parts(self) -> list[dict[str, Any]]:
        return [{"ETag": self._etags[n], "PartNumber": n} for n in sorted(self._etags)]


class S3Upload:
    """One object being written to S3: the :class:`~storage.base.ObjectUpload` of the store.

    Made by :meth:`S3ObjectStore.new_upload` and driven by
    :func:`storage.destination.upload`; see the module docstring.
    """

    def __init__(
        self,
        store: S3ObjectStore,
        key: str,
        content_type: str,
        on_multipart_started: Callable[[str], Awaitable[None]] | None,
        owner: str | None = None,
    ):
        self._store = store
        self._key = key
        self._content_type = content_type
        self._owner = owner
        self._on_multipart_started = on_multipart_started
        self._part_size = store.settings.part_size
        self._staging = bytearray()
        self._small_limit = min(SMALL_OBJECT_BYTES, self._part_size)
        self._buffer: PartBuffer | None = None
        self._filled = 0
        self._upload: _PartUploads | None = None
        self._committing = False
        # After a reclaim: the current part is kept in _staging, _charged bytes
        # of it against the store's staging budget.
        self._staged = False
        self._charged = 0
        self._refused: UploadTooSlow | None = None

    async def write(self, chunk: bytes) -> None:
        """Stage ``chunk``, or copy it into part buffers and send the parts that are full."""
        self._hold()
        if self._refused is not None:
            raise self._refused
        if self._staged:
            await self._stage(memoryview(chunk))
        else:
            if self._buffer is None and self._upload is None:
                if len(self._staging) + len(chunk) <= self._small_limit:
                    self._staging += chunk
                    return
                if self._staging:
                    staged, self._staging = self._staging, bytearray()
                    await self._copy(memoryview(staged))
            await self._copy(memoryview(chunk))
        if self._buffer is not None:
            # Back to waiting for the client: the pool may take the buffer back.
            self._buffer.reclaimable(self._give_up)

    def _hold(self) -> None:
        """Withdraw the filling buffer from reclaiming: the upload works on it now."""
        if self._buffer is not None:
            self._buffer.reclaimable(None)

    def _give_up(self) -> None:
        """The pool takes the filling buffer back: keep its bytes in the staging area.

        Called synchronously by the pool while the upload waits for its client.
        """
        buffer, self._buffer = self._buffer, None
        filled, self._filled = self._filled, 0
        assert buffer is not None and not self._staging
        budget = self._store.staging
        if budget.try_take(filled):
            self._staging = bytearray(buffer.view[:filled])
            self._charged, self._staged = filled, True
        else:
            self._refused = self._too_slow()
        buffer.release()

    def _too_slow(self) -> UploadTooSlow:
        fill_seconds = self._store.pool.fill_seconds
        assert fill_seconds is not None
        return UploadTooSlow(fill_seconds, self._store.staging.capacity)

    def _drop_staging(self) -> None:
        """Forget the staged bytes and return their charge."""
        self._staging, self._staged = bytearray(), False
        charged, self._charged = self._charged, 0
        if charged:
            self._store.staging.give_back(charged)

    async def _stage(self, data: memoryview) -> None:
        """Keep ``data`` in the staging area, charged; send the part once it is complete."""
        take = min(self._part_size - len(self._staging), len(data))
        if not self._store.staging.try_take(take):
            self._drop_staging()
            self._refused = self._too_slow()
            raise self._refused
        self._charged += take
        self._staging += data[:take]
        if take == len(data):
            return
        # More bytes prove the staged part is not the last one: send it from
        # the staging area and go on with the next part on a pooled buffer.
        upload = await self._start_multipart()
        part = self._detach_staged()
        await upload.submit(part, len(part.view))
        await self._copy(data[take:])

    def _detach_staged(self) -> _StagedPart:
        part = _StagedPart(self._staging, self._store.staging, self._charged)
        self._staging, self._staged, self._charged = bytearray(), False, 0
        return part

    async def _copy(self, data: memoryview) -> None:
        offset, total = 0, len(data)
        while offset < total:
            if self._buffer is None:
                # Holding no filling buffer while waiting: deadlock-free. When
                # the pool has nothing for this owner now, a part of this upload
                # finishing frees a buffer: that wait is on the object store
                # (bounded by its timeouts), not on other uploads' clients, so
                # it is not counted against the pool's wait limit.
                pool = self._store.pool
                if self._upload is not None and not pool.can_lend(self._owner):
                    await self._upload.wait_for_one()
                self._buffer = await pool.acquire(self._owner)
                self._filled = 0
            elif self._filled == self._part_size:
                # A full buffer is only sent once more bytes prove it is not the
                # last one, so a stream of exactly one part stays one PutObject.
                await self._send_full_part()
                continue
            take = min(self._part_size - self._filled, total - offset)
            self._buffer.view[self._filled : self._filled + take] = data[offset : offset + take]
            self._filled += take
            offset += take

    async def _start_multipart(self) -> _PartUploads:
        if self._upload is None:
            response = await self._store._call(
                "create_multipart_upload",
                timeout=self._store._control_timeout,
                Bucket=self._store.settings.bucket,
                Key=self._key,
                ContentType=self._content_type,
            )
            self._upload = _PartUploads(
                self._store, self._key, response["UploadId"], self._store.settings.part_concurrency
            )
            if self._on_multipart_started is not None:
                await self._on_multipart_started(self._upload.upload_id)
        return self._upload

    async def _send_full_part(self) -> None:
        upload = await self._start_multipart()
        buffer, self._buffer = self._buffer, None
        assert buffer is not None
        await upload.submit(buffer, self._filled)

    async def commit(self, sha256_hex: str) -> None:
        """Commit the object: one PutObject, or the last part and CompleteMultipartUpload.

        ``sha256_hex`` is the digest of the whole stream, which the small
        PutObject of :mod:`storage.lean` is signed with.
        """
        self._hold()
        if self._refused is not None:
            raise self._refused
        store = self._store
        small = self._buffer is None and len(self._staging) <= self._small_limit
        if self._upload is None and small and store.lean is not None:
            self._committing = True
            if await store._put_small(self._key, self._staging, self._content_type, sha256_hex):
                self._committing = False
                self._drop_staging()
                return
            # Any other answer: the same PutObject again, through botocore below.
        if self._upload is None:
            buffer, self._buffer = self._buffer, None
            # Small objects (the staging area, at most 256 KiB) go as a plain
            # bytearray: no Expect: 100-continue round trip, which botocore adds
            # to every file-like body.
            body: bytearray | BufferBody = self._staging
            if buffer is not None:
                body = BufferBody(buffer.view[: self._filled])
            elif not small:  # a part kept in staging after a reclaim
                body = BufferBody(memoryview(self._staging))
            sent = False
            self._committing = True
            try:
                await store._call(
                    "put_object",
                    timeout=store._data_timeout,
                    Bucket=store.settings.bucket,
                    Key=self._key,
                    Body=body,
                    ContentType=self._content_type,
                )
                sent = True
            finally:
                if buffer is not None:
                    buffer.release(reuse=sent)
            self._committing = False
            self._drop_staging()
            return
        buffer, self._buffer = self._buffer, None
        if buffer is not None:
            if self._filled:
                await self._upload.submit(buffer, self._filled)
            else:
                buffer.release()
        elif self._staging:
            part = self._detach_staged()
            await self._upload.submit(part, len(part.view))
        await self._upload.wait()
        self._committing = True
        await store._call(
            "complete_multipart_upload",
            timeout=store._data_timeout,
            Bucket=store.settings.bucket,
            Key=self._key,
            UploadId=self._upload.upload_id,
            MultipartUpload={"Parts": self._upload.parts()},
        )
        self._committing = False

    async def abort(self, *, cancelled: bool) -> None:
        """Undo whatever was written, in a task the caller's cancellation cannot interrupt.

        Best effort: never raises a storage error. After a cancellation, an
        object whose commit was on the wire is deleted too.
        """
        self._hold()
        await self._store._shielded(self._undo(cancelled=cancelled))

    async def _undo(self, *, cancelled: bool) -> None:
        if self._buffer is not None:
            self._buffer.release()
            self._buffer = None
        self._drop_staging()
        store = self._store
        if self._upload is not None:
            await self._upload.cancel()
            with contextlib.suppress(StorageError):
                await store.abort_multipart(self._key, self._upload.upload_id)
        if self._committing and cancelled:
            with contextlib.suppress(StorageError):
                await store.delete(self._key)


class S3ObjectStore:
    """An :class:`~storage.base.ObjectStore` on one S3 bucket.

    Create it with ``async with S3ObjectStore.connect(settings) as store:``,
    which owns the aiobotocore client. ``observer``, if given, is called as
    ``observer(operation, seconds, ok)`` after every S3 call (``ok`` is false
    when the call failed; a missing object or an unsatisfiable range is an
    answer, not a failure; cancelled calls are not reported); exceptions it
    raises are ignored.
    """

    backend_name: str = "s3"

    def __init__(
        self,
        client: Any,
        settings: S3Settings,
        *,
        observer: Observer | None = None,
        lean: LeanS3 | None = None,
    ):
        self._client = client
        self.settings = settings
        self.lean = lean
        self._observer = observer
        self.pool = BufferPool(
            settings.part_size,
            settings.buffer_count,
            owner_limit=settings.buffer_owner_limit,
            wait_seconds=settings.buffer_wait_seconds,
            fill_seconds=settings.buffer_fill_seconds,
        )
        self.staging = StagingBudget(settings.staging_budget_bytes)
        # Control calls move little data; data calls may wait read_timeout per read.
        self._control_timeout = settings.timeout_seconds * 3
        self._data_timeout = settings.read_timeout * 3
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> Any:
        """The underlying aiobotocore S3 client, for instrumentation."""
        return self._client

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, settings: S3Settings, *, observer: Observer | None = None
    ) -> AsyncIterator[S3ObjectStore]:
        """Create the aiobotocore client, yield the store, close the client on exit.

        On exit it first waits (up to the control timeout) for aborts still
        running on behalf of cancelled uploads.
        """
        session = get_session()
        async with session.create_client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            config=client_config(settings),
        ) as client:
            client.meta.events.register_first(
                "needs-retry.s3", retry_unreachable_quickly, unique_id="storage-retry-unreachable"
            )
            lean = LeanS3.for_settings(settings)
            if lean is not None:
                await lean.start()
            store = cls(client, settings, observer=observer, lean=lean)
            try:
                yield store
            finally:
                await store._finish_cleanups()
                store.pool.close()
                if store.lean is not None:
                    await store.lean.close()

    async def _finish_cleanups(self) -> None:
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=self._control_timeout)

    def _observe(self, operation: str, started: float, ok: bool) -> None:
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer(operation, time.perf_counter() - started, ok)

    async def _call(
        self,
        operation: str,
        *,
        timeout: float | None,
        key: str | None = None,
        ok_codes: Collection[str] = (),
        **params: Any,
    ) -> Any:
        """Run one aiobotocore operation: bounded, translated and observed.

        Returns the parsed response, or ``None`` when S3 answered one of
        ``ok_codes`` (errors the caller treats as success).
        """
        started = time.perf_counter()
        try:
            with translated_errors(operation, key=key):
                async with asyncio.timeout(timeout):
                    response = await getattr(self._client, operation)(**params)
        except StorageError as exc:
            if exc.code is not None and exc.code in ok_codes:
                self._observe(operation, started, True)
                return None
            self._observe(operation, started, isinstance(exc, ObjectNotFound | RangeNotSatisfiable))
            raise
        self._observe(operation, started, True)
        return response

    async def _put_small(
        self, key: str, body: bytearray, content_type: str, sha256_hex: str
    ) -> bool:
        """PutObject through :class:`~storage.lean.LeanS3`; ``False``: retry with botocore.

        A timeout is final (it already waited as long as botocore would have);
        a failed connection or any answer but 200 is left to botocore's retries
        and error translation.
        """
        assert self.lean is not None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._data_timeout):
                stored = await self.lean.put(
                    key, body, content_type=content_type, sha256_hex=sha256_hex
                )
        except TimeoutError as exc:
            self._observe("put_object", started, False)
            raise translate_error("put_object", exc, key=key) from exc
        except (aiohttp.ClientError, OSError):
            return False
        if stored:
            self._observe("put_object", started, True)
        return stored

    async def _get_lean(self, key: str, range_header: str | None) -> S3ObjectReader | None:
        """GetObject through :class:`~storage.lean.LeanS3`; ``None``: ask botocore.

        As for :meth:`_put_small`, a timeout is final and anything else but a
        ``200``/``206`` (a missing key, an unsatisfiable range) is left to botocore.
        """
        assert self.lean is not None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._control_timeout):
                response = await self.lean.get(key, range_header)
        except TimeoutError as exc:
            self._observe("get_object", started, False)
            raise translate_error("get_object", exc, key=key) from exc
        except (aiohttp.ClientError, OSError):
            return None
        if response is None:
            return None
        self._observe("get_object", started, True)
        content_length = response.content_length
        assert content_length is not None
        content_range = response.headers.get("Content-Range")
        return S3ObjectReader(
            _ResponseBody(response),
            key=key,
            content_length=content_length,
            total_size=_total_size(content_length, content_range),
            content_range=content_range,
        )

    async def _shielded(self, cleanup: Coroutine[Any, Any, None]) -> None:
        """Run ``cleanup`` to the end even if the awaiting task is cancelled meanwhile."""
        task = asyncio.create_task(cleanup)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        await asyncio.shield(task)

    def new_upload(
        self,
        key: str,
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
        on_multipart_started: Callable[[str], Awaitable[None]] | None = None,
        owner: str | None = None,
    ) -> S3Upload:
        """The upload of ``key``; see :meth:`storage.base.ObjectStore.new_upload`.

        ``max_bytes`` must fit in ``MAX_PARTS`` parts of ``part_size``
        (:class:`ValueError` otherwise); the limit itself is enforced by the
        caller (:func:`storage.destination.upload`). ``on_multipart_started``
        runs while the upload holds one full part buffer; it must not wait for
        other uploads. ``owner`` counts the upload's part buffers against that
        owner's share.
        """
        if max_bytes > self.settings.part_size * MAX_PARTS:
            raise ValueError(f"max_bytes exceeds {MAX_PARTS} parts of {self.settings.part_size}")
        return S3Upload(self, key, content_type, on_multipart_started, owner)

    async def open_range(
        self,
        key: str,
        start: int | None = None,
        end: int | None = None,
        *,
        suffix_length: int | None = None,
    ) -> ObjectReader:
        """Open ``key`` (or a byte range of it) for streaming; ranges go to S3 as given."""
        header = format_range(start, end, suffix_length=suffix_length)
        if self.lean is not None:
            reader = await self._get_lean(key, header)
            if reader is not None:
                return reader
        params: dict[str, Any] = {"Bucket": self.settings.bucket, "Key": key}
        if header is not None:
            params["Range"] = header
        response = await self._call("get_object", timeout=self._control_timeout, key=key, **params)
        content_length = int(response["ContentLength"])
        content_range = response.get("ContentRange")
        return S3ObjectReader(
            response["Body"],
            key=key,
            content_length=content_length,
            total_size=_total_size(content_length, content_range),
            content_range=content_range,
        )

    async def delete(self, key: str) -> None:
        """Delete ``key``; S3 answers a missing key like a deleted one."""
        await self._call(
            "delete_object",
            timeout=self._control_timeout,
            ok_codes=_NOT_FOUND_CODES,
            Bucket=self.settings.bucket,
            Key=key,
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort the upload and free its parts; an unknown upload id is fine."""
        await self._call(
            "abort_multipart_upload",
            timeout=self._control_timeout,
            ok_codes=frozenset({"NoSuchUpload", *_NOT_FOUND_CODES}),
            Bucket=self.settings.bucket,
            Key=key,
            UploadId=upload_id,
        )

    async def list_incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        """Every unfinished multipart upload under ``prefix`` (all pages)."""
        uploads: list[IncompleteUpload] = []
        markers: dict[str, str] = {}
        while True:
            page = await self._call(
                "list_multipart_uploads",
                timeout=self._control_timeout,
                Bucket=self.settings.bucket,
                Prefix=prefix,
                **markers,
            )
            uploads.extend(
                IncompleteUpload(
                    key=item["Key"], upload_id=item["UploadId"], initiated=_utc(item["Initiated"])
                )
                for item in page.get("Uploads", ())
            )
            key_marker = page.get("NextKeyMarker")
            if not page.get("IsTruncated") or not key_marker:
                return uploads
            markers = {"KeyMarker": key_marker}
            if page.get("NextUploadIdMarker"):
                markers["UploadIdMarker"] = page["NextUploadIdMarker"]

    async def list_objects(
        self, prefix: str, *, page_size: int = 1000
    ) -> AsyncIterator[ObjectInfo]:
        """Yield the objects under ``prefix`` in key order, fetching ``page_size`` per call."""
        token: dict[str, str] = {}
        while True:
            page = await self._call(
                "list_objects_v2",
                timeout=self._control_timeout,
                Bucket=self.settings.bucket,
                Prefix=prefix,
                MaxKeys=page_size,
                **token,
            )
            for item in page.get("Contents", ()):
                yield ObjectInfo(
                    key=item["Key"],
                    size=int(item["Size"]),
                    last_modified=_utc(item["LastModified"]),
                )
            next_token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not next_token:
                return
            token = {"ContinuationToken": next_token}

    async def ping(self) -> None:
        """``HeadBucket`` within ``timeout_seconds``.

        Any failure, including a missing bucket or refused credentials, is
        reported as :class:`StorageUnavailable`: the store cannot serve.
        """
        try:
            await self._call(
                "head_bucket", timeout=self.settings.timeout_seconds, Bucket=self.settings.bucket
            )
        except StorageUnavailable:
            raise
        except StorageError as exc:
            raise StorageUnavailable("head_bucket", str(exc), code=exc.code) from exc
