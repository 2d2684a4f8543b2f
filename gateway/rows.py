"""Typed rows: one frozen dataclass per table the gateway reads.

The SQL modules of :mod:`gateway.db` return these, never ``asyncpg.Record``, so
handlers and use-cases see named, typed fields. Each ``from_record`` takes the
columns of a ``SELECT *`` (extra columns of a join are ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self

import leases


def _columns(cls: type[Any], record: Mapping[str, Any]) -> dict[str, Any]:
    return {f.name: record[f.name] for f in fields(cls)}


class _Row:
    """A row read as its table's columns of the same names."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls(**_columns(cls, record))


@dataclass(frozen=True, kw_only=True)
class ArtifactRow:
    """A row of ``artifacts``: an artifact, available or a tombstone."""

    artifact_id: str
    project_id: str
    seq: int
    name: str
    mime: str
    mime_class: str
    size: int
    sha256: str
    sniffed_mime: str | None
    content_agrees: bool
    state: str  # available | deleted
    created_at: datetime
    deleted_at: datetime | None
    deleted_by: str | None
    owner_kind: str  # run | user | agent | service
    owner_id: str
    created_by: str
    lease_id: str | None
    run_id: str | None
    step_id: str | None
    job_id: str | None
    attempt: int | None
    worker_session_id: str | None
    session_id: str | None
    description: str | None
    metadata: str  # the stored JSON text (served through jsonio.stored_json)
    derived_from: tuple[str, ...]
    object_key: str
    storage_backend: str
    signing_epoch: int
    artifact_type: str | None = None  # a slug label (report, plan, log …)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        values = _columns(cls, record)
        values["derived_from"] = tuple(values["derived_from"] or ())
        return cls(**values)

    @property
    def lineage(self) -> leases.Lineage | None:
        """The claim's lineage of a run artifact; None for a principal artifact."""
        if self.lease_id is None:
            return None
        assert self.run_id and self.step_id and self.job_id and self.worker_session_id
        assert self.attempt is not None
        return leases.Lineage(
            run_id=self.run_id,
            step_id=self.step_id,
            job_id=self.job_id,
            attempt=self.attempt,
            worker_session_id=self.worker_session_id,
            session_id=self.session_id,
        )

    @property
    def available(self) -> bool:
        return self.state == "available"


@dataclass(frozen=True, kw_only=True)
class QuotaRow:
    """A project's quota, as ``GET …/artifacts/quota`` answers (the configured
    default applies to a project without a ``projects`` row or a limit)."""

    project: str
    used_bytes: int
    limit_bytes: int
    artifact_count: int
    limit_artifacts: int

    @property
    def left(self) -> int:
        return max(0, self.limit_bytes - self.used_bytes)

    @property
    def full(self) -> bool:
        """No publish fits, an empty file included: no byte or no artifact is left."""
        return self.left == 0 or self.artifact_count >= self.limit_artifacts

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "used_bytes": self.used_bytes,
            "limit_bytes": self.limit_bytes,
            "artifact_count": self.artifact_count,
            "limit_artifacts": self.limit_artifacts,
        }


@dataclass(frozen=True, kw_only=True)
class EventRow(_Row):
    """A row of ``events``; ``payload`` (the artifact) and ``metadata`` are the
    stored JSON texts, read apart so a payload that cannot be served costs one field."""

    seq: int
    type: str
    artifact_id: str
    payload: str
    metadata: str | None
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class PendingUpload(_Row):
    """A row of ``pending_uploads``: an object being written, for gc after a crash."""

    object_key: str
    project_id: str
    artifact_id: str
    upload_id: str | None
    started_at: datetime


@dataclass(frozen=True, kw_only=True)
class ObjectDeletion(_Row):
    """A row of ``object_deletions``: an object whose delete failed, retried by gc."""

    object_key: str
    project_id: str
    artifact_id: str | None
    enqueued_at: datetime
    attempts: int
    last_error: str | None


@dataclass(frozen=True, kw_only=True)
class IdempotencyRecord:
    """A row of ``idempotency_keys`` with the artifact it published."""

    artifact: ArtifactRow
    sha256: str
    request_digest: str | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls(
            artifact=ArtifactRow.from_record(record),
            sha256=record["key_sha256"],
            request_digest=record["request_digest"],
        )
