"""Artifacts: ids, the one JSON shape of an artifact, and deletion.

:func:`view` is the only place an artifact becomes JSON: ``GET …/artifacts/{id}``,
the items of the listing and the ``artifact`` of both events (paged and live)
all come from it, from one typed row (:class:`gateway.rows.ArtifactRow`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from ulid import ULID

from gateway import content, metrics
from gateway.db import artifacts as artifact_rows
from gateway.db import deletions, projects
from gateway.db import events as event_rows
from gateway.errors import ApiError, IdempotencyConflict, QuotaExceeded
from gateway.jsonio import rfc3339, stored_json
from gateway.logs import get_logger
from gateway.rows import ArtifactRow, IdempotencyRecord, QuotaRow
from storage import ObjectStore

log = get_logger("gateway.artifacts")


def new_artifact_id() -> str:
    """``art_`` + a ULID: time-ordered, 80 random bits."""
    return f"art_{ULID()}"


def object_key(project: str, artifact_id: str) -> str:
    return f"projects/{project}/{artifact_id}"


def reference(row: ArtifactRow) -> dict[str, Any]:
    """The short shape a publish answers with."""
    return {
        "type": "artifact",
        "id": row.artifact_id,
        "name": row.name,
        "mime": row.mime,
        "size": row.size,
        "sha256": row.sha256,
    }


def with_metadata(artifact: dict[str, Any], stored: str | None) -> dict[str, Any]:
    """Set ``artifact["metadata"]`` from its stored JSON text.

    Metadata that cannot be served (written before the input limits, too deep to
    encode) is served as ``{}`` with ``"metadata_omitted": "unreadable"``, so one
    odd row never fails a page, a listing or an event stream.
    """
    metadata, readable = stored_json(stored)
    if readable and isinstance(metadata, dict):
        artifact["metadata"] = metadata
    elif stored is not None:
        artifact["metadata"] = {}
        artifact["metadata_omitted"] = "unreadable"
        log.warning("artifact.metadata_unreadable", artifact_id=artifact.get("id"))
    return artifact


def view(row: ArtifactRow) -> dict[str, Any]:
    """The whole artifact: as ``GET …/artifacts/{id}``, the listing and events show it."""
    lineage = row.lineage
    artifact = {
        "type": "artifact",
        "id": row.artifact_id,
        "project": row.project_id,
        "name": row.name,
        "mime": row.mime,
        "size": row.size,
        "sha256": row.sha256,
        "state": row.state,
        "created_at": rfc3339(row.created_at),
        "deleted_at": rfc3339(row.deleted_at),
        "owner": {"kind": row.owner_kind, "id": row.owner_id},
        "lineage": lineage.as_dict() if lineage is not None else None,
        "created_by": row.created_by,
        "description": row.description,
        "metadata": {},
        "derived_from": list(row.derived_from),
        "artifact_type": row.artifact_type,
    }
    return with_metadata(artifact, row.metadata)


INCLUDED_CONTENT_BYTES = 1024 * 1024
"""The largest text ``?include_content=true`` puts into the artifact's JSON."""


async def included_content(store: ObjectStore, row: ArtifactRow) -> dict[str, Any]:
    """``content`` for ``GET …/artifacts/{id}?include_content=true``.

    The text of a text artifact (the serving policy's inline text rule: a text or
    code mime whose bytes agreed with it) of at most 1 MiB; otherwise ``"content":
    null`` and ``"content_omitted"``: ``binary``, ``too_large`` or ``deleted``.
    """
    if not row.available:
        return {"content": None, "content_omitted": "deleted"}
    shown = content.presentation(row.mime, row.content_agrees)
    if shown.disposition != "inline" or shown.content_type != content.TEXT_PLAIN_UTF8:
        return {"content": None, "content_omitted": "binary"}
    if row.size > INCLUDED_CONTENT_BYTES:
        return {"content": None, "content_omitted": "too_large"}
    data = bytearray()
    async with await store.open_range(row.object_key) as reader:
        async for chunk in reader.iter_chunks():
            data += chunk
            if len(data) > INCLUDED_CONTENT_BYTES:  # the object is not what the row says
                return {"content": None, "content_omitted": "too_large"}
    try:
        return {"content": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"content": None, "content_omitted": "binary"}


def view_json(row: ArtifactRow) -> str:
    """:func:`view` as JSON text (an event's stored payload)."""
    return json.dumps(view(row), separators=(",", ":"), ensure_ascii=False)


def quota_exceeded(
    size: int, quota: QuotaRow, *, at_least: bool = False, request_bytes: int | None = None
) -> ApiError:
    """413 quota_exceeded, saying what is known of the size: the file's ``size``, at
    least ``size`` when the upload was cut off there (``at_least``), or the whole
    request's ``request_bytes`` (its ``Content-Length``) when the file's own size is
    not known yet."""
    extra = {
        "limit_bytes": quota.limit_bytes,
        "used_bytes": quota.used_bytes,
        "limit_artifacts": quota.limit_artifacts,
        "artifact_count": quota.artifact_count,
    }
    if quota.artifact_count >= quota.limit_artifacts:
        detail = (
            f"the project holds {quota.artifact_count} artifacts, "
            f"its limit is {quota.limit_artifacts}"
        )
    else:
        if request_bytes is not None:
            what = f"the request of {request_bytes} bytes"
        elif at_least:
            what = f"the file (at least {size} bytes so far)"
        else:
            what = f"the file of {size} bytes"
        detail = f"{what} cannot fit in the {quota.left} bytes left"
        if quota.left == 0:
            detail += ": the byte quota is used up, so no publish fits, an empty file included"
    return QuotaExceeded(detail, extra=extra)


def check_replay(record: IdempotencyRecord, *, sha256: str, request_digest: str) -> None:
    """A replay must repeat the request: the same file and the same descriptive parts.

    Keys recorded before descriptive parts were remembered compare the file only.
    """
    recorded = record.request_digest
    if record.sha256 != sha256 or (recorded is not None and recorded != request_digest):
        raise IdempotencyConflict(
            "this Idempotency-Key was used for a different request "
            "(the file or a descriptive part differs)"
        )


async def delete(
    db: asyncpg.Pool, store: ObjectStore, project: str, artifact_id: str, *, deleted_by: str
) -> ArtifactRow | None:
    """Delete an artifact: its tombstone, quota release and ``artifact.deleted`` event
    in one transaction, then its bytes. None when it was already deleted.

    The event's artifact is the tombstone's :func:`view`. An object that cannot be
    deleted now is queued for gc (``object_deletions``), never lost.
    """
    async with db.acquire() as conn, conn.transaction():
        row = await artifact_rows.tombstone(conn, project, artifact_id, deleted_by=deleted_by)
        if row is None:
            return None
        seq = await projects.release(conn, project, row.size)
        await event_rows.append(
            conn,
            project=project,
            seq=seq,
            event_type="artifact.deleted",
            artifact_id=artifact_id,
            payload=view_json(row),
        )
    metrics.EVENTS_EMITTED.labels("artifact.deleted").inc()
    try:
        await asyncio.shield(store.delete(row.object_key))
    except Exception as exc:
        log.warning("object.delete_failed", artifact_id=row.artifact_id, error=type(exc).__name__)
        await deletions.queue(
            db,
            project=row.project_id,
            artifact_id=row.artifact_id,
            key=row.object_key,
            error=f"{type(exc).__name__}: {exc}",
        )
    log.info("artifact.deleted", project=project, artifact_id=row.artifact_id)
    return row
