"""Deprecated: the asyncio client is :mod:`mobius_artifacts.client` (values in
:mod:`mobius_artifacts.values`, configuration in :mod:`mobius_artifacts.config`)."""

from mobius_artifacts.client import AsyncArtifactClient
from mobius_artifacts.config import ENV_LEASE_TOKEN, ENV_PROJECT, ENV_TOKEN, ENV_URL
from mobius_artifacts.events import MAX_SSE_LINE, EventStream
from mobius_artifacts.transport import (
    CHUNK_SIZE,
    LEASE_HEADER,
    MAX_ERROR_BODY,
    MAX_RETRY_AFTER,
    RETRY_STATUSES,
    USER_AGENT,
)
from mobius_artifacts.values import (
    Artifact,
    ArtifactRef,
    Event,
    Lineage,
    Owner,
    Progress,
    Quota,
    SignedURL,
    Source,
)

__all__ = [
    "CHUNK_SIZE",
    "ENV_LEASE_TOKEN",
    "ENV_PROJECT",
    "ENV_TOKEN",
    "ENV_URL",
    "LEASE_HEADER",
    "MAX_ERROR_BODY",
    "MAX_RETRY_AFTER",
    "MAX_SSE_LINE",
    "RETRY_STATUSES",
    "USER_AGENT",
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
]
