"""Errors as RFC 9457 problem+json answers: the one error → status table of the HTTP layer.

:func:`problem_for` renders an :class:`~gateway.errors.ApiError` (and, through
:func:`gateway.errors.api_error_for`, every domain and driver error) and
aiohttp's own HTTP errors; :func:`problem_response` builds the answer.
"""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from gateway.errors import (
    MAX_INSTANCE,
    PROBLEM_CONTENT_TYPE,
    ApiError,
    ArtifactTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    Problem,
    UnsupportedMediaType,
    api_error_for,
)

_HTTP_CODES: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: ArtifactTooLarge,
    415: UnsupportedMediaType,
}


def problem_for(exc: BaseException) -> Problem | None:
    """Translate any known error into a Problem; None for an unexpected one (a 500)."""
    api = api_error_for(exc)
    if api is None and isinstance(exc, HttpProcessingError):
        api = InvalidRequest(f"malformed request: {exc.message}")
    elif api is None and isinstance(exc, RequestPayloadError):
        # A body whose framing (chunked transfer coding) does not parse, on any
        # route that reads one. Its message quotes the parser, not the client.
        api = InvalidRequest("the request body could not be read: its framing is malformed")
    elif api is None and isinstance(exc, web.HTTPException) and exc.status >= 400:
        cls = _HTTP_CODES.get(exc.status)
        if cls is None:
            return Problem(status=exc.status, code="http_error", title=exc.reason)
        api = cls(exc.reason if exc.status != 413 else "request body too large")
    return None if api is None else Problem.of(api)


def problem_response(
    problem: Problem, request_id: str, request: web.BaseRequest | None = None
) -> web.Response:
    """The problem+json answer; with ``request``, its ``instance`` is the request's path
    (RFC 9457 §3.1.5: the occurrence; never the query, which may carry a signature).
    A path longer than :data:`MAX_INSTANCE` is not echoed."""
    body = problem.body(request_id)
    if request is not None and len(request.path) <= MAX_INSTANCE:
        body.setdefault("instance", request.path)
    return web.Response(
        status=problem.status,
        text=json.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )
