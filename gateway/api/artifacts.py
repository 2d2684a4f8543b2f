"""Artifacts: publish, list, inspect, delete, signed URLs, and the project's quota."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway import artifacts, metrics, signing
from gateway.api.params import MAX_INT64, artifact_id_of, ascii_int, project_of
from gateway.auth import Principal, owner_kind_of
from gateway.credentials import member_of, reader_of
from gateway.errors import ArtifactDeleted, Forbidden, InvalidRequest, NotFound
from gateway.jsonio import field_int, json_response, read_json_object, rfc3339
from gateway.logs import get_logger
from gateway.publish import handle_publish
from gateway.state import CONFIG, DB, STORE

log = get_logger("gateway.artifacts")
LIST_PARAMS = frozenset(
    {
        "run_id",
        "step_id",
        "job_id",
        "attempt",
        "session_id",
        "owner",
        "mime_class",
        "name_prefix",
        "include_deleted",
        "limit",
        "cursor",
    }
)
MIME_CLASSES = ("image", "html", "code", "text", "other")


def can_see(principal: Principal, row: Any) -> bool:
    """Run artifacts: every reader of the project. Principal artifacts: owner and admins."""
    if row["owner_kind"] == "run":
        return True
    return row["owner_id"] == principal.sub or principal.has("artifacts:admin")


async def visible_artifact(request: web.Request) -> tuple[str, Principal, Any]:
    project = project_of(request)
    principal = reader_of(request, project)
    artifact_id = artifact_id_of(request)
    row = await artifacts.get_artifact(request.app[DB], project, artifact_id)
    if row is None or not can_see(principal, row):
        raise NotFound("no such artifact")
    return project, principal, row


async def get_artifact(request: web.Request) -> web.Response:
    _, _, row = await visible_artifact(request)
    return json_response(artifacts.full(row))


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, seq = raw.partition(":")
        if version != "v1":
            raise ValueError(cursor)
        return ascii_int(seq, "cursor", low=0, high=MAX_INT64)
    except (ValueError, binascii.Error, UnicodeDecodeError, InvalidRequest):
        raise InvalidRequest("cursor is not one this gateway issued") from None


def _text_param(query: Any, name: str) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if not value or len(value) > 255 or not value.isprintable():
        raise InvalidRequest(f"'{name}' must be 1 to 255 printable characters")
    return str(value)


def parse_list_query(query: Any) -> artifacts.ListQuery:
    unknown = sorted(set(query) - LIST_PARAMS)
    if unknown:
        raise InvalidRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    for name in query:
        if len(query.getall(name)) > 1:
            raise InvalidRequest(f"'{name}' is given more than once")
    fields: dict[str, Any] = {
        name: _text_param(query, name)
        for name in ("run_id", "step_id", "job_id", "session_id", "name_prefix")
    }
    attempt = query.get("attempt")
    if attempt is not None:
        fields["attempt"] = ascii_int(attempt, "attempt", low=1, high=1_000_000)
    owner = _text_param(query, "owner")
    if owner is not None:
        kind, sep, ident = owner.partition(":")
        if not sep or not ident:
            raise InvalidRequest("'owner' is kind:id, e.g. user:alice or run:run_42")
        if kind == "run":
            fields |= {"owner_kind": "run", "owner_id": ident}
        else:
            # a principal's owner id is its sub; its kind follows from the sub's prefix
            fields |= {"owner_kind": owner_kind_of(owner), "owner_id": owner}
    klass = query.get("mime_class")
    if klass is not None:
        if klass not in MIME_CLASSES:
            raise InvalidRequest(f"'mime_class' is one of {', '.join(MIME_CLASSES)}")
        fields["mime_class"] = klass
    deleted = query.get("include_deleted", "false")
    if deleted not in ("true", "false"):
        raise InvalidRequest("'include_deleted' is true or false")
    limit = ascii_int(query.get("limit", "50"), "limit", low=1, high=200)
    cursor = query.get("cursor")
    return artifacts.ListQuery(
        **fields,
        include_deleted=deleted == "true",
        limit=limit,
        before_seq=decode_cursor(cursor) if cursor else None,
    )


async def list_artifacts(request: web.Request) -> web.Response:
    project = project_of(request)
    principal = reader_of(request, project)
    query = parse_list_query(request.query)
    rows = await artifacts.list_artifacts(
        request.app[DB],
        project,
        query,
        viewer=principal.sub,
        viewer_is_admin=principal.has("artifacts:admin"),
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return json_response(
        {
            "items": [artifacts.full(row) for row in rows],
            "next_cursor": encode_cursor(rows[-1]["seq"]) if more else None,
        }
    )


async def delete_artifact(request: web.Request) -> web.Response:
    project, principal, row = await visible_artifact(request)
    owns = row["owner_kind"] != "run" and row["owner_id"] == principal.sub
    if not (principal.has("artifacts:admin") or (owns and principal.has("artifacts:delete"))):
        raise Forbidden("deleting needs artifacts:delete on your own artifact, or artifacts:admin")
    db = request.app[DB]
    async with db.acquire() as conn:
        deleted = await artifacts.delete_artifact(
            conn, project, row["artifact_id"], deleted_by=principal.sub
        )
    if deleted is not None:
        metrics.EVENTS_EMITTED.labels("artifact.deleted").inc()
        await _remove_object(request, deleted)
        log.info("artifact.deleted", project=project, artifact_id=row["artifact_id"])
    return web.Response(status=204)


async def _remove_object(request: web.Request, row: Any) -> None:
    """Delete the bytes of a tombstoned artifact; a failure is queued for gc, not lost."""
    try:
        await asyncio.shield(request.app[STORE].delete(row["object_key"]))
    except Exception as exc:
        log.warning(
            "object.delete_failed", artifact_id=row["artifact_id"], error=type(exc).__name__
        )
        await artifacts.queue_object_deletion(
            request.app[DB],
            project=row["project_id"],
            artifact_id=row["artifact_id"],
            key=row["object_key"],
            error=f"{type(exc).__name__}: {exc}",
        )


async def mint_signed_url(request: web.Request) -> web.Response:
    project, principal, row = await visible_artifact(request)
    body = await read_json_object(request, optional=True)
    expires_in = field_int(
        body,
        "expires_in",
        default=signing.DEFAULT_EXPIRES_IN,
        low=1,
        high=signing.MAX_EXPIRES_IN,
    )
    if row["state"] == "deleted":
        raise ArtifactDeleted("the artifact was deleted")
    key = request.app[CONFIG].url_signing_keys[0]
    exp = int(time.time()) + expires_in
    sig = signing.signature(
        key,
        project=project,
        artifact_id=row["artifact_id"],
        exp=exp,
        principal=principal.sub,
        epoch=row["signing_epoch"],
    )
    expires_at = datetime.fromtimestamp(exp, UTC)
    await artifacts.record_mint(
        request.app[DB],
        project=project,
        artifact_id=row["artifact_id"],
        principal=principal.sub,
        kid=key.kid,
        sig_hash=signing.sig_hash(sig),
        epoch=row["signing_epoch"],
        expires_at=expires_at,
    )
    metrics.SIGNED_URLS.labels("minted").inc()
    log.info("signed_url.minted", project=project, artifact_id=row["artifact_id"], exp=exp)
    url = (
        f"/v1/projects/{project}/artifacts/{row['artifact_id']}/content"
        f"?exp={exp}&kid={key.kid}&sig={sig}"
    )
    return json_response({"url": url, "expires_at": rfc3339(expires_at)})


async def revoke_signed_urls(request: web.Request) -> web.Response:
    project, principal, row = await visible_artifact(request)
    if not principal.has("artifacts:admin"):
        raise Forbidden("revoking signed URLs needs artifacts:admin")
    await artifacts.revoke_signed_urls(request.app[DB], project, row["artifact_id"])
    log.info("signed_url.revoked", project=project, artifact_id=row["artifact_id"])
    return web.Response(status=204)


async def get_quota(request: web.Request) -> web.Response:
    project = project_of(request)
    reader_of(request, project)
    state = await artifacts.quota_state(
        request.app[DB], project, request.app[CONFIG].default_quota_bytes
    )
    return json_response(state)


async def put_quota(request: web.Request) -> web.Response:
    project = project_of(request)
    member_of(request, project, "artifacts:admin")
    body = await read_json_object(request)
    limit = field_int(body, "limit_bytes", low=0, high=2**62)
    state = await artifacts.set_quota(
        request.app[DB], project, limit, request.app[CONFIG].default_quota_bytes
    )
    return json_response(state)


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/projects/{project}/artifacts", handle_publish)
    app.router.add_get("/v1/projects/{project}/artifacts", list_artifacts, allow_head=False)
    app.router.add_get("/v1/projects/{project}/artifacts/quota", get_quota, allow_head=False)
    app.router.add_put("/v1/projects/{project}/quota", put_quota)
    app.router.add_get(
        "/v1/projects/{project}/artifacts/{artifact_id}", get_artifact, allow_head=False
    )
    app.router.add_delete("/v1/projects/{project}/artifacts/{artifact_id}", delete_artifact)
    app.router.add_post(
        "/v1/projects/{project}/artifacts/{artifact_id}/signed-url", mint_signed_url
    )
    app.router.add_delete(
        "/v1/projects/{project}/artifacts/{artifact_id}/signed-urls", revoke_signed_urls
    )
