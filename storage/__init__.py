"""Object storage for the gateway: streaming uploads with sha256, ranged reads, clean-up.

The rest of the gateway depends on the :class:`ObjectStore` protocol, the
:func:`upload` destination that hashes, counts and limits every stored stream
above it, and the errors in :mod:`storage.errors`; :class:`S3ObjectStore`
implements the protocol on any S3-compatible service::

    async with S3ObjectStore.connect(settings) as store:
        stored = await upload(store, key, chunks, max_bytes=limit)
"""

from storage.base import (
    IncompleteUpload,
    ObjectInfo,
    ObjectReader,
    ObjectStore,
    ObjectUpload,
    StoredObject,
    format_range,
)
from storage.buffers import BufferPool, PartBuffer, StagingBudget
from storage.destination import HEAD_BYTES, upload
from storage.errors import (
    EntityTooLarge,
    ObjectNotFound,
    RangeNotSatisfiable,
    StorageBusy,
    StorageError,
    StorageUnavailable,
    UploadTooSlow,
)
from storage.s3 import (
    Observer,
    S3ObjectReader,
    S3ObjectStore,
    S3Settings,
    S3Upload,
    client_config,
    translate_error,
)

__all__ = [
    "HEAD_BYTES",
    "BufferPool",
    "EntityTooLarge",
    "IncompleteUpload",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectReader",
    "ObjectStore",
    "ObjectUpload",
    "Observer",
    "PartBuffer",
    "RangeNotSatisfiable",
    "S3ObjectReader",
    "S3ObjectStore",
    "S3Settings",
    "S3Upload",
    "StagingBudget",
    "StorageBusy",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "UploadTooSlow",
    "client_config",
    "format_range",
    "translate_error",
    "upload",
]
