"""Object storage for the gateway: streaming uploads with sha256, ranged reads, clean-up.

The rest of the gateway depends on the :class:`ObjectStore` protocol and the
errors in :mod:`storage.errors`; :class:`S3ObjectStore` implements it on any
S3-compatible service::

    async with S3ObjectStore.connect(settings) as store:
        stored = await store.put_stream(key, chunks, max_bytes=limit)
"""

from storage.base import (
    HEAD_BYTES,
    IncompleteUpload,
    ObjectInfo,
    ObjectReader,
    ObjectStore,
    StoredObject,
    format_range,
)
from storage.buffers import BufferPool, PartBuffer
from storage.errors import (
    EntityTooLarge,
    ObjectNotFound,
    RangeNotSatisfiable,
    StorageBusy,
    StorageError,
    StorageUnavailable,
)
from storage.s3 import (
    Observer,
    S3ObjectReader,
    S3ObjectStore,
    S3Settings,
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
    "Observer",
    "PartBuffer",
    "RangeNotSatisfiable",
    "S3ObjectReader",
    "S3ObjectStore",
    "S3Settings",
    "StorageBusy",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "client_config",
    "format_range",
    "translate_error",
]
