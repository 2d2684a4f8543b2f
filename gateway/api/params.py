"""Path and query parameters shared by the route modules."""

from __future__ import annotations

from aiohttp import web

from gateway.api.state import context
from gateway.errors import InvalidRequest, NotFound
from gateway.ids import ARTIFACT_ID, LEASE_ID, PROJECT_ID
from gateway.numbers import MAX_INT64, parse_decimal

__all__ = ["MAX_INT64", "artifact_id_of", "ascii_int", "lease_id_of", "project_of"]


def ascii_int(value: str, name: str, *, low: int, high: int) -> int:
    """A query or header value that must be a decimal integer in ``[low, high]``.

    Read by :func:`gateway.numbers.parse_decimal`: 1 to 19 ASCII digits, so
    neither a Unicode digit nor a value past int64 gets through.
    """
    number = parse_decimal(value)
    if number is None or not low <= number <= high:
        raise InvalidRequest(f"'{name}' must be an integer from {low} to {high}")
    return number


def project_of(request: web.Request) -> str:
    project = request.match_info["project"]
    if not PROJECT_ID.fullmatch(project):
        raise InvalidRequest("project ids are 1-128 of A-Z a-z 0-9 . _ - (starting alphanumeric)")
    context(request).project = project
    return project


def lease_id_of(request: web.Request) -> str:
    """The claim's lease id from the path; one that cannot exist is a 404."""
    lease_id = request.match_info["lease_id"]
    if not LEASE_ID.fullmatch(lease_id):
        raise NotFound("no such claim")
    context(request).lease_id = lease_id
    return lease_id


def artifact_id_of(request: web.Request) -> str:
    artifact_id = request.match_info["artifact_id"]
    if not ARTIFACT_ID.fullmatch(artifact_id):
        raise NotFound("no such artifact")
    context(request).artifact_id = artifact_id
    return artifact_id
