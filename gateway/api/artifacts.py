"""Artifacts: publish, inspect, and the project's quota."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import artifacts
from gateway.api.params import artifact_id_of, project_of
from gateway.auth import Principal
from gateway.credentials import principal_of
from gateway.errors import Forbidden, NotFound
from gateway.jsonio import field_int, json_response, read_json_object
from gateway.publish import handle_publish
from gateway.state import CONFIG, DB


def reader_of(request: web.Request, project: str) -> Principal:
    """A principal who may read in ``project``; outsiders get 404, never 403."""
    principal = principal_of(request)
    if not principal.in_project(project):
        raise NotFound("no such artifact")
    if not principal.has("artifacts:read"):
        raise Forbidden("the token lacks the artifacts:read scope")
    return principal


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


async def get_quota(request: web.Request) -> web.Response:
    project = project_of(request)
    principal = principal_of(request)
    principal.require(project, "artifacts:read")
    state = await artifacts.quota_state(
        request.app[DB], project, request.app[CONFIG].default_quota_bytes
    )
    return json_response(state)


async def put_quota(request: web.Request) -> web.Response:
    project = project_of(request)
    principal_of(request).require(project, "artifacts:admin")
    body = await read_json_object(request)
    limit = field_int(body, "limit_bytes", low=0, high=2**62)
    state = await artifacts.set_quota(
        request.app[DB], project, limit, request.app[CONFIG].default_quota_bytes
    )
    return json_response(state)


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/projects/{project}/artifacts", handle_publish)
    app.router.add_get("/v1/projects/{project}/artifacts/quota", get_quota)
    app.router.add_put("/v1/projects/{project}/quota", put_quota)
    app.router.add_get("/v1/projects/{project}/artifacts/{artifact_id}", get_artifact)
