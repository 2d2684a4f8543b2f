"""Domain errors of the storage package.

Every error raised by an :class:`~storage.base.ObjectStore` is a
:class:`StorageError`; driver exceptions (botocore, aiohttp, socket errors,
timeouts) are translated at the adapter edge and never reach callers. Each error
carries the data a caller needs to answer (an HTTP status, a metric label)
without parsing messages.
"""

from __future__ import annotations


class StorageError(Exception):
    """Object storage refused or failed an operation.

    ``operation`` names the S3 operation (``"put_object"``, ``"upload_part"``…)
    when one was involved, and ``code`` is the S3 error code (``"AccessDenied"``,
    ``"NoSuchBucket"``…) or the driver exception's class name. Raised as such for
    failures that are neither transient nor one of the specific cases below:
    they usually mean a misconfiguration (credentials, bucket, policy).
    """

    def __init__(self, message: str, *, operation: str | None = None, code: str | None = None):
        super().__init__(message)
        self.operation = operation
        self.code = code


class StorageUnavailable(StorageError):
    """Object storage could not be reached or answered with a transient failure.

    Connection refused or reset, DNS and endpoint errors, timeouts, HTTP 5xx and
    the S3 codes ``SlowDown``, ``ServiceUnavailable``, ``InternalError`` and
    ``RequestTimeout``. Nothing was stored by the failed operation; retrying later
    may succeed.
    """

    def __init__(self, operation: str, detail: str, *, code: str | None = None):
        super().__init__(
            f"object storage unavailable during {operation}: {detail}",
            operation=operation,
            code=code,
        )
        self.detail = detail


class EntityTooLarge(StorageError):
    """The stream carried more than ``limit`` bytes; nothing was stored."""

    def __init__(self, limit: int):
        super().__init__(f"the stream exceeded the limit of {limit} bytes", code="EntityTooLarge")
        self.limit = limit


class ObjectNotFound(StorageError):
    """No object is stored under ``key``."""

    def __init__(self, key: str, *, operation: str | None = None):
        super().__init__(f"no object stored under {key!r}", operation=operation, code="NoSuchKey")
        self.key = key


class RangeNotSatisfiable(StorageError):
    """The requested byte range lies outside the object.

    ``size`` is the object's total size when the store reported it (S3 sends it
    in ``Content-Range: bytes */<size>`` or ``ActualObjectSize``), else ``None``.
    """

    def __init__(self, size: int | None, *, operation: str | None = None):
        where = f"an object of {size} bytes" if size is not None else "the object"
        super().__init__(
            f"the requested range is not satisfiable for {where}",
            operation=operation,
            code="InvalidRange",
        )
        self.size = size


class StorageBusy(StorageError):
    """No part buffer could be lent to the upload within ``waited`` seconds; nothing was stored.

    ``own_share`` is true when the upload's owner already held every buffer one
    owner may hold (its own uploads are what it waited for), false when the
    whole budget was taken. Retrying later may succeed.
    """

    def __init__(self, waited: float, *, own_share: bool):
        whose = "its owner's share of the" if own_share else "the"
        super().__init__(
            f"no part buffer came free in {waited:g} seconds ({whose} buffer budget is in use)",
            code="BufferBusy",
        )
        self.waited = waited
        self.own_share = own_share


class UploadTooSlow(StorageError):
    """The upload was refused for filling its part buffer too slowly; nothing was stored.

    Its client did not fill a part buffer within ``fill_seconds`` while other
    uploads waited for one, so the buffer was taken back, and the bytes it held
    did not fit in what all such slow uploads together may keep staged
    (``staging_bytes``). Faster uploads were not affected.
    """

    def __init__(self, fill_seconds: float, staging_bytes: int):
        super().__init__(
            f"the upload did not fill a part buffer in {fill_seconds:g} seconds while other "
            f"uploads waited, and the {staging_bytes} bytes kept for slow uploads are in use",
            code="UploadTooSlow",
        )
        self.fill_seconds = fill_seconds
        self.staging_bytes = staging_bytes
