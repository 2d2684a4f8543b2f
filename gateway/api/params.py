"""Path and query parameters shared by the route modules."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.errors import InvalidRequest, NotFound
from gateway.state import context

PROJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ARTIFACT_ID = re.compile(r"^art_[0-9A-HJKMNP-TV-Z]{26}$")


def project_of(request: web.Request) -> str:
    project = request.match_info["project"]
    if not PROJECT_ID.match(project):
        raise InvalidRequest("project ids are 1-128 of A-Z a-z 0-9 . _ - (starting alphanumeric)")
    context(request).project = project
    return project


def artifact_id_of(request: web.Request) -> str:
    artifact_id = request.match_info["artifact_id"]
    if not ARTIFACT_ID.match(artifact_id):
        raise NotFound("no such artifact")
    context(request).artifact_id = artifact_id
    return artifact_id
