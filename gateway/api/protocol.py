"""The HTTP connection layer: aiohttp's own refusals as problem+json, logged in one line.

A request that aiohttp refuses before any handler runs (a request line or header
that is too long, a malformed head, a bad chunk size) is answered by aiohttp's
``RequestHandler.handle_error``, whose default is a ``text/plain`` body that
echoes part of the input, logged as a multi-line traceback carrying the first
bytes of the offending line (a bearer token, say). :class:`GatewayRunner` serves
the application with a connection handler whose errors are problem+json like
every other answer, without echoing input, and logged as one JSON line that
names only the error's type.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from ulid import ULID

from gateway.api.middleware import expects_continue
from gateway.api.problems import problem_response
from gateway.errors import (
    ExpectationFailed,
    InternalError,
    InvalidRequest,
    Problem,
)
from gateway.logs import get_logger

log = get_logger("gateway.http")

_TIMEOUT = Problem(status=504, code="gateway_timeout", title="Gateway timeout")


def _problem(status: int, exc: BaseException | None) -> Problem:
    """What to answer for a connection-level error; never the client's bytes."""
    if status == 400:
        detail = (
            "a request line or header is too long"
            if isinstance(exc, LineTooLong)
            else "malformed HTTP request"
        )
        return Problem(
            status=400, code=InvalidRequest.code, title=InvalidRequest.title, detail=detail
        )
    if status == 504:
        return _TIMEOUT
    if 400 <= status < 500:
        return Problem(status=status, code="http_error", title="Request refused")
    return Problem(status=500, code=InternalError.code, title=InternalError.title)


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, with problem+json errors and one-line logs."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        problem = _problem(status, exc)
        request_id = str(ULID())
        log.warning(
            "http.protocol_error",
            status=problem.status,
            code=problem.code,
            error=type(exc).__name__ if exc is not None else None,
            request_id=request_id,
        )
        if request.writer.output_size > 0:
            # Part of an answer is out already: the connection can only be closed.
            raise ConnectionError("response already started; closing the connection")
        response = problem_response(problem, request_id)
        response.headers["X-Request-ID"] = request_id
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's own error logs, as one JSON line.

        A protocol error's message quotes the request's bytes, so only its type is
        logged; anything else keeps its traceback (rendered into the JSON line).
        """
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            log.warning("http.connection_error", error=type(exc).__name__)
        else:
            log.error("http.connection_error", exc_info=exc)


class ProblemServer(web.Server):
    """A low-level server whose connections use :class:`ProblemRequestHandler`.

    It also answers an ``Expect`` other than ``100-continue`` with a problem+json
    417 before routing: aiohttp's own answer, on any route, is ``text/plain`` (and
    a 500 when the value is not ASCII).
    """

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)

    def meet_expectations(self) -> None:
        app_handler = self.request_handler

        async def handler(request: BaseRequest) -> web.StreamResponse:
            if "Expect" in request.headers and not expects_continue(request):
                problem = Problem(
                    status=ExpectationFailed.status,
                    code=ExpectationFailed.code,
                    title=ExpectationFailed.title,
                    detail="the only expectation understood is 100-continue",
                )
                return problem_response(problem, str(ULID()))
            return await app_handler(request)

        self.request_handler = handler


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connection errors answer problem+json (see module doc)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds a plain Server; only its connection factory differs here.
        server.__class__ = ProblemServer
        assert isinstance(server, ProblemServer)
        server.meet_expectations()
        return server
