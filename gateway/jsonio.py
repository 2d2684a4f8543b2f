"""JSON in and out: responses, bounded request bodies, RFC 3339 timestamps."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.errors import InvalidRequest, UnsupportedMediaType


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(),
        content_type="application/json",
        headers=headers,
    )


async def read_json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object body (bounded by the app's client_max_size)."""
    if not request.body_exists:
        if optional:
            return {}
        raise InvalidRequest("a JSON object body is required")
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise UnsupportedMediaType("the body must be application/json")
    raw = await request.read()
    if not raw.strip() and optional:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return data


def field_str(
    data: Mapping[str, Any], key: str, *, required: bool = True, max_len: int = 200
) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"'{key}' is required")
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidRequest(f"'{key}' must be a string of 1 to {max_len} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidRequest(f"'{key}' must not contain control characters")
    return value


def field_int(
    data: Mapping[str, Any], key: str, *, default: int | None = None, low: int, high: int
) -> int:
    value = data.get(key, default)
    if value is None:
        raise InvalidRequest(f"'{key}' is required")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be an integer from {low} to {high}")
    return value
