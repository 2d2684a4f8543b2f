"""Artifacts: list, inspect, delete, signed URLs, and the project's quota.

(Publishing is :mod:`gateway.api.publish`; the bytes are :mod:`gateway.api.content`.)
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway import artifacts, metrics, signing
from gateway.api.bodies import json_response, read_json_object
from gateway.api.credentials import member_of, reader_of
from gateway.api.params import MAX_INT64, artifact_id_of, ascii_int, project_of
from gateway.api.state import CONFIG, DB, SIGNED_URL_MINTS, STORE
from gateway.auth import Principal, owner_kind_of
from gateway.db import artifacts as artifact_rows
from gateway.db import mints, projects
from gateway.db.artifacts import LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT, MIME_CLASSES, ListQuery
from gateway.db.projects import MAX_LIMIT, QUOTA_LIMITS, DefaultLimits
from gateway.errors import ArtifactDeleted, Forbidden, InvalidRequest, NotFound, RateLimited
from gateway.ids import ARTIFACT_TYPE
from gateway.jsonio import field_int, rfc3339
from gateway.logs import get_logger
from gateway.rows import ArtifactRow
from gateway.visibility import Viewer, can_delete, can_revoke

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
        "artifact_type",
        "name_prefix",
        "include_deleted",
        "limit",
        "cursor",
    }
)


async def visible_artifact(request: web.Request) -> tuple[str, Principal, ArtifactRow]:
    """The path's artifact, if the reader may see it (:mod:`gateway.visibility`); else 404."""
    project = project_of(request)
    principal = reader_of(request, project)
    artifact_id = artifact_id_of(request)
    row = await artifact_rows.get(request.app[DB], project, artifact_id)
    if row is None or not Viewer.of(principal).can_see(row):
        raise NotFound("no such artifact")
    return project, principal, row


async def get_artifact(request: web.Request) -> web.Response:
    _, _, row = await visible_artifact(request)
    body = artifacts.view(row)
    include = request.query.get("include_content", "false")
    if include not in ("true", "false"):
        raise InvalidRequest("'include_content' is true or false")
    if include == "true":
        body |= await artifacts.included_content(request.app[STORE], row)
    return json_response(body)


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


def parse_list_query(query: Any) -> ListQuery:
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
    artifact_type = query.get("artifact_type")
    if artifact_type is not None:
        if not ARTIFACT_TYPE.fullmatch(artifact_type):
            raise InvalidRequest("'artifact_type' is a slug such as report, plan or log")
        fields["artifact_type"] = artifact_type
    klass = query.get("mime_class")
    if klass is not None:
        if klass not in MIME_CLASSES:
            raise InvalidRequest(f"'mime_class' is one of {', '.join(MIME_CLASSES)}")
        fields["mime_class"] = klass
    deleted = query.get("include_deleted", "false")
    if deleted not in ("true", "false"):
        raise InvalidRequest("'include_deleted' is true or false")
    limit = ascii_int(
        query.get("limit", str(LIST_DEFAULT_LIMIT)), "limit", low=1, high=LIST_MAX_LIMIT
    )
    cursor = query.get("cursor")
    return ListQuery(
        **fields,
        include_deleted=deleted == "true",
        limit=limit,
        before_seq=decode_cursor(cursor) if cursor else None,
    )


async def list_artifacts(request: web.Request) -> web.Response:
    project = project_of(request)
    principal = reader_of(request, project)
    query = parse_list_query(request.query)
    rows = await artifact_rows.list_page(request.app[DB], project, query, Viewer.of(principal))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return json_response(
        {
            "items": [artifacts.view(row) for row in rows],
            "next_cursor": encode_cursor(rows[-1].seq) if more else None,
        }
    )


async def delete_artifact(request: web.Request) -> web.Response:
    project, principal, row = await visible_artifact(request)
    if not can_delete(principal, row):
        raise Forbidden("deleting needs artifacts:delete on your own artifact, or artifacts:admin")
    await artifacts.delete(
        request.app[DB], request.app[STORE], project, row.artifact_id, deleted_by=principal.sub
    )
    return web.Response(status=204)


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
    if not row.available:
        raise ArtifactDeleted("the artifact was deleted")
    limit_mints(request, principal)
    key = request.app[CONFIG].url_signing_keys[0]
    exp = int(time.time()) + expires_in
    sig = signing.signature(
        key,
        project=project,
        artifact_id=row.artifact_id,
        exp=exp,
        principal=principal.sub,
        epoch=row.signing_epoch,
    )
    expires_at = datetime.fromtimestamp(exp, UTC)
    await mints.record(
        request.app[DB],
        project=project,
        artifact_id=row.artifact_id,
        principal=principal.sub,
        kid=key.kid,
        sig_hash=signing.sig_hash(sig),
        epoch=row.signing_epoch,
        expires_at=expires_at,
    )
    metrics.SIGNED_URLS.labels("minted").inc()
    log.info("signed_url.minted", project=project, artifact_id=row.artifact_id, exp=exp)
    url = (
        f"/v1/projects/{project}/artifacts/{row.artifact_id}/content"
        f"?exp={exp}&kid={key.kid}&sig={sig}"
    )
    return json_response({"url": url, "expires_at": rfc3339(expires_at)})


def limit_mints(request: web.Request, principal: Principal) -> None:
    """Spend one of the principal's signed-URL mints on this replica, or answer 429."""
    buckets = request.app[SIGNED_URL_MINTS]
    wait = buckets.take(principal.sub)
    if wait > 0:
        metrics.SIGNED_URLS.labels("rate_limited").inc()
        raise RateLimited(
            f"at most {buckets.per_minute} signed URLs a minute (bursts of {buckets.burst}) "
            "are minted for one principal; retry later",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


async def revoke_signed_urls(request: web.Request) -> web.Response:
    project, principal, row = await visible_artifact(request)
    if not can_revoke(principal):
        raise Forbidden("revoking signed URLs needs artifacts:admin")
    await artifact_rows.bump_signing_epoch(request.app[DB], project, row.artifact_id)
    log.info("signed_url.revoked", project=project, artifact_id=row.artifact_id)
    return web.Response(status=204)


async def get_quota(request: web.Request) -> web.Response:
    project = project_of(request)
    reader_of(request, project)
    quota = await projects.quota(request.app[DB], project, DefaultLimits.of(request.app[CONFIG]))
    return json_response(quota.as_dict())


async def put_quota(request: web.Request) -> web.Response:
    project = project_of(request)
    member_of(request, project, "artifacts:admin")
    body = await read_json_object(request)
    unknown = sorted(set(body) - set(QUOTA_LIMITS))
    if unknown:
        raise InvalidRequest(
            f"unknown field '{unknown[0]}'; the limits are {', '.join(QUOTA_LIMITS)}"
        )
    if not body:
        raise InvalidRequest(f"name at least one of {', '.join(QUOTA_LIMITS)}")
    limits = {
        key: field_int(body, key, low=0, high=MAX_LIMIT) if key in body else None
        for key in QUOTA_LIMITS
    }
    quota = await projects.set_limits(
        request.app[DB],
        project,
        DefaultLimits.of(request.app[CONFIG]),
        limit_bytes=limits["limit_bytes"],
        limit_artifacts=limits["limit_artifacts"],
    )
    return json_response(quota.as_dict())
