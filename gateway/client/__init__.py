"""Client of the artifact gateway: publish, list, download and follow artifacts.

For a worker holding a lease (``MOBIUS_ARTIFACTS_URL`` and ``MOBIUS_LEASE_TOKEN``
in its environment)::

    from gateway import client

    ref = client.publish("report.md", metadata={"suite": "nightly"})

For a read client (``MOBIUS_ARTIFACTS_URL``, ``MOBIUS_ARTIFACTS_TOKEN``,
``MOBIUS_PROJECT``)::

    client.download(ref.id, "report.md")

:class:`AsyncArtifactClient` is the asyncio client, :class:`ArtifactClient` its
blocking twin; both take the same arguments, and explicit arguments override the
environment. Errors are :class:`ArtifactError` subclasses carrying the gateway's
problem ``code``, ``status``, ``detail`` and ``request_id``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.client.errors import (
    ArtifactDeleted,
    ArtifactError,
    ArtifactTooLarge,
    ConfigurationError,
    DigestMismatch,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    LeaseInactive,
    LeaseSuperseded,
    LineageNotAllowed,
    NotFound,
    QuotaExceeded,
    SignatureInvalid,
    Unauthenticated,
    Unavailable,
)

if TYPE_CHECKING:
    from gateway.client.core import (
        ENV_LEASE_TOKEN,
        ENV_PROJECT,
        ENV_TOKEN,
        ENV_URL,
        Artifact,
        ArtifactRef,
        AsyncArtifactClient,
        Event,
        EventStream,
        Lineage,
        Owner,
        Progress,
        Quota,
        SignedURL,
        Source,
    )
    from gateway.client.sync import ArtifactClient

# aiohttp is imported on first use of the client, not by ``import gateway.client``
# (the ``artifact-gateway`` command line loads this package for every command).
_LAZY = {
    "ArtifactClient": "gateway.client.sync",
    **{
        name: "gateway.client.core"
        for name in (
            "ENV_LEASE_TOKEN",
            "ENV_PROJECT",
            "ENV_TOKEN",
            "ENV_URL",
            "Artifact",
            "ArtifactRef",
            "AsyncArtifactClient",
            "Event",
            "EventStream",
            "Lineage",
            "Owner",
            "Progress",
            "Quota",
            "SignedURL",
            "Source",
        )
    },
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ENV_LEASE_TOKEN",
    "ENV_PROJECT",
    "ENV_TOKEN",
    "ENV_URL",
    "Artifact",
    "ArtifactClient",
    "ArtifactDeleted",
    "ArtifactError",
    "ArtifactRef",
    "ArtifactTooLarge",
    "AsyncArtifactClient",
    "ConfigurationError",
    "DigestMismatch",
    "Event",
    "EventStream",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidRequest",
    "LeaseInactive",
    "LeaseSuperseded",
    "Lineage",
    "LineageNotAllowed",
    "NotFound",
    "Owner",
    "Progress",
    "Quota",
    "QuotaExceeded",
    "SignatureInvalid",
    "SignedURL",
    "Source",
    "Unauthenticated",
    "Unavailable",
    "download",
    "publish",
]


def publish(
    path_or_fileobj: Source,
    *,
    name: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    derived_from: Iterable[str | ArtifactRef | Artifact] | None = None,
    mime: str | None = None,
    **client_options: Any,
) -> ArtifactRef:
    """Publish one file with a client configured from the environment (blocking).

    ``client_options`` (``url``, ``lease_token``, ``token``, ``project``,
    ``retries``…) override the environment as in :class:`ArtifactClient`.
    """
    from gateway.client.sync import ArtifactClient

    with ArtifactClient(**client_options) as c:
        return c.publish(
            path_or_fileobj,
            name=name,
            description=description,
            metadata=metadata,
            derived_from=derived_from,
            mime=mime,
        )


def download(artifact_id: str, dest: str | os.PathLike[str], **client_options: Any) -> Path:
    """Download one artifact, verified, with a client configured from the environment."""
    from gateway.client.sync import ArtifactClient

    with ArtifactClient(**client_options) as c:
        return c.download(artifact_id, dest)
