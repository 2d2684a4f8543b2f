"""What the client hands back: artifact references, artifacts, quotas, events, signed URLs.

Plain frozen dataclasses built from the gateway's JSON answers (see the API
reference); ``raw`` keeps the JSON as received where the gateway may add fields.
Each ``from_json`` reads the fields it knows and ignores the others, so a gateway
that adds a field (to an artifact, its lineage, its owner, a quota, an event)
never breaks an older client.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, TypeAlias

Progress: TypeAlias = Callable[[int, int | None], None]
"""``progress(done_bytes, total_bytes_or_None)``; ``done`` restarts lower after a retry."""
Source: TypeAlias = str | os.PathLike[str] | bytes | IO[bytes]
"""What can be published: a path, the bytes themselves, or a binary file object."""


def timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of the gateway's JSON, ``None`` when absent."""
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value)


@dataclass(frozen=True, kw_only=True)
class ArtifactRef:
    """What a publish returns: enough to find, fetch and verify the artifact."""

    id: str
    project: str
    name: str
    mime: str
    size: int
    sha256: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any], project: str) -> ArtifactRef:
        return cls(
            id=str(data["id"]),
            project=str(data.get("project") or project),
            name=str(data["name"]),
            mime=str(data["mime"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class Owner:
    kind: str  # "run", "user", "agent" or "service"
    id: str


@dataclass(frozen=True, kw_only=True)
class Lineage:
    """Where a run artifact comes from, taken by the gateway from the job's claim.

    ``worker_session_id`` names the worker process (one per worker start);
    ``session_id`` (optional) groups the runs of one larger session of work, such
    as an agent's conversation, across workers.
    """

    run_id: str
    step_id: str
    job_id: str
    attempt: int
    worker_session_id: str
    session_id: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lineage:
        session_id = data.get("session_id")
        return cls(
            run_id=str(data["run_id"]),
            step_id=str(data["step_id"]),
            job_id=str(data["job_id"]),
            attempt=int(data["attempt"]),
            worker_session_id=str(data["worker_session_id"]),
            session_id=None if session_id is None else str(session_id),
        )


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """The full artifact, as ``GET …/artifacts/{id}`` answers (``raw`` keeps the JSON)."""

    id: str
    project: str
    name: str
    mime: str
    size: int
    sha256: str
    state: str
    created_at: datetime
    deleted_at: datetime | None
    owner: Owner
    lineage: Lineage | None
    created_by: str | None
    description: str | None
    metadata: Mapping[str, Any]
    derived_from: tuple[str, ...]
    artifact_type: str | None = None
    """A label such as ``report``, ``plan`` or ``log`` (``None`` when not set)."""
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        lineage = data.get("lineage")
        owner = data.get("owner") or {}
        created_at = timestamp(data.get("created_at"))
        return cls(
            id=str(data["id"]),
            project=str(data["project"]),
            name=str(data["name"]),
            mime=str(data["mime"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            state=str(data.get("state", "available")),
            created_at=created_at or datetime.fromtimestamp(0, UTC),
            deleted_at=timestamp(data.get("deleted_at")),
            owner=Owner(kind=str(owner.get("kind", "")), id=str(owner.get("id", ""))),
            lineage=Lineage.from_json(lineage) if isinstance(lineage, Mapping) else None,
            created_by=data.get("created_by"),
            description=data.get("description"),
            metadata=dict(data.get("metadata") or {}),
            derived_from=tuple(data.get("derived_from") or ()),
            artifact_type=data.get("artifact_type"),
            raw=dict(data),
        )

    @property
    def deleted(self) -> bool:
        return self.state == "deleted"

    @property
    def ref(self) -> ArtifactRef:
        return ArtifactRef(
            id=self.id,
            project=self.project,
            name=self.name,
            mime=self.mime,
            size=self.size,
            sha256=self.sha256,
        )


@dataclass(frozen=True, kw_only=True)
class ArtifactContent:
    """The bytes of a small artifact, read whole and verified by sha256.

    ``inline`` and ``content_type`` are the gateway's serving decision: text it
    serves inline is ``text/plain; charset=utf-8``, a raster image it serves
    inline keeps its image type, and everything else is an attachment.
    """

    artifact: Artifact
    data: bytes = field(repr=False)
    content_type: str
    inline: bool

    @property
    def is_text(self) -> bool:
        """Served inline as UTF-8 text (the gateway checked that the bytes are UTF-8)."""
        return self.inline and self.content_type.split(";")[0].strip().lower() == "text/plain"

    @property
    def is_image(self) -> bool:
        """A raster image served inline (its bytes agree with its image type)."""
        return self.inline and self.content_type.lower().startswith("image/")

    def text(self) -> str:
        """The bytes as UTF-8 text (``UnicodeDecodeError`` when they are not)."""
        return self.data.decode("utf-8")


@dataclass(frozen=True, kw_only=True)
class SignedURL:
    """An absolute URL that needs no other credential until ``expires_at``."""

    url: str
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class Quota:
    project: str
    used_bytes: int
    limit_bytes: int
    artifact_count: int
    #: None from a gateway older than the artifact-count limit.
    limit_artifacts: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Quota:
        limit_artifacts = data.get("limit_artifacts")
        return cls(
            project=str(data["project"]),
            used_bytes=int(data["used_bytes"]),
            limit_bytes=int(data["limit_bytes"]),
            artifact_count=int(data["artifact_count"]),
            limit_artifacts=None if limit_artifacts is None else int(limit_artifacts),
        )

    @property
    def available_bytes(self) -> int:
        return max(0, self.limit_bytes - self.used_bytes)


@dataclass(frozen=True, kw_only=True)
class Event:
    """One entry of the project's event feed (``artifact.created`` / ``artifact.deleted``)."""

    seq: int
    type: str
    artifact: Artifact | None
    """The artifact as it was; ``None`` when the gateway could not serve the stored
    event (``payload_omitted`` says why; ``artifact_id`` still names it)."""
    at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    artifact_id: str = ""
    payload_omitted: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        body = data.get("artifact")
        body = body if isinstance(body, Mapping) else {}
        omitted = body.get("payload_omitted")
        return cls(
            seq=int(data["seq"]),
            type=str(data["type"]),
            artifact=None if omitted is not None else Artifact.from_json(body),
            artifact_id=str(body.get("id", "")),
            payload_omitted=None if omitted is None else str(omitted),
            at=timestamp(data.get("at")),
            raw=dict(data),
        )
