"""JSON over HTTP: bounded JSON request bodies and JSON responses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.api.middleware import send_continue
from gateway.errors import InvalidRequest, UnsupportedMediaType
from gateway.jsonio import JsonRefused, parse_json


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
    await send_continue(request)
    raw = await request.read()
    if not raw.strip() and optional:
        return {}
    try:
        data = parse_json(raw)
    except JsonRefused as exc:
        raise InvalidRequest(f"the body is refused: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return data
