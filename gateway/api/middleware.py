"""Request context (request id, access log) and the one place errors become problem+json."""

from __future__ import annotations

import contextlib
import re
import time

import structlog
from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Handler
from ulid import ULID

from gateway import metrics
from gateway.api.problems import problem_for, problem_response
from gateway.api.state import (
    DB,
    DRAIN,
    EVENT_HUB,
    REQUEST_CONTEXT,
    RequestContext,
    client_gone,
    context,
)
from gateway.errors import (
    DB_BROKEN_CONNECTION,
    ClientClosed,
    InternalError,
    Problem,
    Unavailable,
    UnsupportedContentEncoding,
)
from gateway.logs import get_logger

log = get_logger("gateway.http")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
CLIENT_CLOSED = ClientClosed.status  # 499, nginx's convention
_CLIENT_CLOSED = Problem(status=CLIENT_CLOSED, code=ClientClosed.code, title=ClientClosed.title)


def request_id_of(request: web.Request) -> str:
    return context(request).request_id


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.fullmatch(incoming) else str(ULID())
    ctx = RequestContext(request_id=request_id)
    request[REQUEST_CONTEXT] = ctx
    drain = request.app[DRAIN]
    drain.enter()
    ctx.counted = True
    started = time.perf_counter()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except BaseException:
        status = CLIENT_CLOSED if client_gone(request) else 500
        raise
    finally:
        release_drain(request)
        route = route_of(request)
        duration = time.perf_counter() - started
        metrics.HTTP_REQUESTS.labels(route, request.method, metrics.status_class(status)).inc()
        metrics.HTTP_DURATION.labels(route, request.method).observe(duration)
        log.info(
            "http.request",
            method=request.method,
            route=route,
            status=status,
            duration_ms=round(duration * 1000, 2),
            bytes_in=ctx.bytes_in if ctx.bytes_in is not None else request.content_length or 0,
            bytes_out=_bytes_out(response),
            **ctx.log_fields(),
        )


def _bytes_out(response: web.StreamResponse | None) -> int:
    """Body bytes of the answer: as written for a stream, as it will be for a body."""
    if response is None:
        return 0
    if response.prepared:
        return response.body_length
    return response.content_length or 0


def release_drain(request: web.Request) -> None:
    """Leave the drain count (once): at the end of a request, or when a stream starts."""
    ctx = context(request)
    if ctx.counted:
        ctx.counted = False
        request.app[DRAIN].leave()


def expects_continue(request: web.BaseRequest) -> bool:
    """True for ``Expect: 100-continue`` (other expectations are refused earlier)."""
    return request.headers.get("Expect", "").strip().lower() == "100-continue"


async def defer_continue(request: web.Request) -> None:
    """Every route's ``expect_handler``: answer ``Expect`` later, inside the middleware.

    aiohttp's default answers ``100 Continue`` before the handler (and the
    middleware) runs. Deferred, a handler first authenticates and checks what it
    can (the publish route: size, quota, replay) and asks for the body with
    :func:`send_continue` only when it wants it, so a refused client never sends
    its body. (Any other expectation is answered 417 by the connection layer,
    :mod:`gateway.api.protocol`, before routing.)
    """


async def send_continue(request: web.Request) -> None:
    """Answer ``Expect: 100-continue`` (HTTP/1.1), once, when the handler wants the body."""
    ctx = context(request)
    if not expects_continue(request) or ctx.continued:
        return
    ctx.continued = True
    if request.version == HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not started


def refuse_content_coding(request: web.BaseRequest) -> None:
    """A request body with a ``Content-Encoding`` other than ``identity`` is a 415.

    On every route, before the handler: the gateway decodes no request content
    coding (the server is built with ``auto_decompress=False``), so a gzip body
    is neither stored as its compressed bytes nor inflated past the size and
    quota checks. RFC 9110 §15.5.16: the answer names what is accepted,
    ``Accept-Encoding: identity``. A request without a body has nothing to decode.
    """
    if not request.body_exists:
        return
    codings = {
        coding.strip().lower()
        for value in request.headers.getall("Content-Encoding", ())
        for coding in value.split(",")
    }
    if codings - {"", "identity"}:
        raise UnsupportedContentEncoding(
            "request bodies are accepted without a content coding (identity) only",
            headers={"Accept-Encoding": "identity"},
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if request.app[DRAIN].draining:
            raise Unavailable(
                "the gateway is shutting down; retry on another replica",
                headers={"Connection": "close", "Retry-After": "1"},
            )
        refuse_content_coding(request)
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        problem = problem_for(exc)
        assert problem is not None
        return problem_response(problem, request_id_of(request), request)
    except Exception as exc:
        if client_gone(request):
            # The client went away (an abandoned upload, a download it stopped
            # reading): its doing, not the gateway's. Whatever the handler then
            # failed on, the outcome is 499 client_closed, apart from the 5xx.
            log.info("http.client_closed", route=route_of(request), error=type(exc).__name__)
            return problem_response(_CLIENT_CLOSED, request_id_of(request), request)
        problem = problem_for(exc)
        if problem is None:
            log.exception("http.unhandled_error", route=route_of(request))
            problem = Problem(status=500, code=InternalError.code, title=InternalError.title)
        elif problem.status >= 500:
            log.warning("http.backend_error", code=problem.code, error=type(exc).__name__)
            if isinstance(exc, DB_BROKEN_CONNECTION):
                await _drop_pooled_connections(request)
        return problem_response(problem, request_id_of(request), request)
    return response


async def _drop_pooled_connections(request: web.Request) -> None:
    """After a broken connection, replace every pooled one on its next acquire.

    A database restart or failover breaks every connection of the pool at once,
    and a connection a cancelled query left mid-operation stays unusable; without
    this, each would fail one more request before asyncpg notices.
    """
    with contextlib.suppress(Exception):
        await request.app[DB].expire_connections()
    hub = request.app.get(EVENT_HUB)
    if hub is not None:  # the event streams' own pool broke alike
        with contextlib.suppress(Exception):
            await hub.pool.expire_connections()


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response, streamed or not, carries X-Request-ID."""
    request_id = request_id_of(request)
    if request_id:
        response.headers["X-Request-ID"] = request_id
