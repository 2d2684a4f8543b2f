"""Path and query parameters shared by the route modules."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.api.state import context
from gateway.errors import InvalidRequest, NotFound
from gateway.ids import ARTIFACT_ID, LEASE_ID, PROJECT_ID

_ASCII_DIGITS = re.compile(r"^[0-9]{1,19}$")
MAX_INT64 = 2**63 - 1


def ascii_int(value: str, name: str, *, low: int, high: int) -> int:
    """A query value that must be a decimal integer in ``[low, high]`` (ASCII digits only).

    ``str.isdigit`` accepts ``²`` and other Unicode digits that ``int`` refuses;
    this does not, and it never lets a value past int64 reach the database.
    """
    number = int(value) if _ASCII_DIGITS.match(value) else None
    if number is None or not low <= number <= high:
        raise InvalidRequest(f"'{name}' must be an integer from {low} to {high}")
    return number


def project_of(request: web.Request) -> str:
    project = request.match_info["project"]
    if not PROJECT_ID.match(project):
        raise InvalidRequest("project ids are 1-128 of A-Z a-z 0-9 . _ - (starting alphanumeric)")
    context(request).project = project
    return project


def lease_id_of(request: web.Request) -> str:
    """The claim's lease id from the path; one that cannot exist is a 404."""
    lease_id = request.match_info["lease_id"]
    if not LEASE_ID.match(lease_id):
        raise NotFound("no such claim")
    context(request).lease_id = lease_id
    return lease_id


def artifact_id_of(request: web.Request) -> str:
    artifact_id = request.match_info["artifact_id"]
    if not ARTIFACT_ID.match(artifact_id):
        raise NotFound("no such artifact")
    context(request).artifact_id = artifact_id
    return artifact_id
