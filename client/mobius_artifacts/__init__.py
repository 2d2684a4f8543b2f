"""Client of the Mobius artifact gateway: publish, list, download and follow artifacts.

For a worker holding a lease (``MOBIUS_ARTIFACTS_URL`` and ``MOBIUS_LEASE_TOKEN``
in its environment)::

    import mobius_artifacts

    ref = mobius_artifacts.publish("report.md", metadata={"suite": "nightly"})

For a read client (``MOBIUS_ARTIFACTS_URL``, ``MOBIUS_ARTIFACTS_TOKEN``,
``MOBIUS_PROJECT``)::

    mobius_artifacts.download(ref.id, "report.md")

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
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from mobius_artifacts._version import __version__
from mobius_artifacts.errors import (
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
    from mobius_artifacts.client import AsyncArtifactClient
    from mobius_artifacts.config import (
        ENV_CA_BUNDLE,
        ENV_LEASE_TOKEN,
        ENV_PROJECT,
        ENV_TOKEN,
        ENV_URL,
    )
    from mobius_artifacts.events import EventStream
    from mobius_artifacts.sync import ArtifactClient
    from mobius_artifacts.values import (
        Artifact,
        ArtifactContent,
        ArtifactRef,
        Event,
        Lineage,
        Owner,
        Progress,
        Quota,
        SignedURL,
        Source,
    )

# aiohttp is imported on first use of the client, not by ``import mobius_artifacts``
# (the command lines load this package before they know what they will do).
_LAZY = {
    "ArtifactClient": "mobius_artifacts.sync",
    "AsyncArtifactClient": "mobius_artifacts.client",
    "EventStream": "mobius_artifacts.events",
    **{
        name: "mobius_artifacts.config"
        for name in ("ENV_CA_BUNDLE", "ENV_LEASE_TOKEN", "ENV_PROJECT", "ENV_TOKEN", "ENV_URL")
    },
    **{
        name: "mobius_artifacts.values"
        for name in (
            "Artifact",
            "ArtifactContent",
            "ArtifactRef",
            "Event",
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
    "ENV_CA_BUNDLE",
    "ENV_LEASE_TOKEN",
    "ENV_PROJECT",
    "ENV_TOKEN",
    "ENV_URL",
    "Artifact",
    "ArtifactClient",
    "ArtifactContent",
    "ArtifactDeleted",
    "ArtifactError",
    "ArtifactRef",
    "ArtifactTooLarge",
    "AsyncArtifactClient",
    "ClientOptions",
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
    "__version__",
    "download",
    "publish",
]


class ClientOptions(TypedDict, total=False):
    """The keyword arguments of :class:`ArtifactClient`, for the one-liners."""

    url: str | None
    token: str | None
    lease_token: str | None
    project: str | None
    retries: int
    stall_timeout: float
    connect_timeout: float
    backoff_base: float
    backoff_max: float
    ca_bundle: str | os.PathLike[str] | None
    env: Mapping[str, str] | None


def publish(
    path_or_fileobj: Source,
    *,
    name: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    derived_from: Iterable[str | ArtifactRef | Artifact] | None = None,
    mime: str | None = None,
    artifact_type: str | None = None,
    **client_options: Unpack[ClientOptions],
) -> ArtifactRef:
    """Publish one file with a client configured from the environment (blocking).

    ``client_options`` (``url``, ``lease_token``, ``token``, ``project``,
    ``retries``…) override the environment as in :class:`ArtifactClient`.
    """
    from mobius_artifacts.sync import ArtifactClient

    with ArtifactClient(**client_options) as c:
        return c.publish(
            path_or_fileobj,
            name=name,
            description=description,
            metadata=metadata,
            derived_from=derived_from,
            mime=mime,
            artifact_type=artifact_type,
        )


def download(
    artifact_id: str, dest: str | os.PathLike[str], **client_options: Unpack[ClientOptions]
) -> Path:
    """Download one artifact, verified, with a client configured from the environment."""
    from mobius_artifacts.sync import ArtifactClient

    with ArtifactClient(**client_options) as c:
        return c.download(artifact_id, dest)
