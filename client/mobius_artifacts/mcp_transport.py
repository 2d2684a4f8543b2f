"""How ``mobius-artifacts mcp`` is reached: stdio, or streamable HTTP on a loopback address.

- Every request is answered. The SDK's stdio reader hands a line it cannot decode
  (a lone surrogate escape such as ``\\ud800``, arrays and objects nested deeper
  than its JSON parser goes, a message of no JSON-RPC shape) to the server as an
  exception, which drops it, and the agent would wait for ever; such a request is
  answered here with a JSON-RPC error carrying its id. An answer that cannot be
  encoded as JSON (it would stop the stdio writer, and the server with it)
  becomes a JSON-RPC error too. Over HTTP the SDK answers an undecodable body
  with ``400`` and a JSON-RPC parse error.
- Over HTTP, the ``Host`` and ``Origin`` of every request are checked, whatever
  loopback address is bound (the SDK checks them only for ``127.0.0.1``,
  ``localhost`` and ``::1``): a page of another site that rebinds its name to
  the loopback address is refused (``421`` for its Host, ``403`` for its Origin).
- Log lines go to stderr with every URL's credentials redacted.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
import pydantic_core
from mcp import types
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from mobius_artifacts.errors import redact

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

logger = logging.getLogger(__name__)

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# ------------------------------------------------------------------------ logging


class RedactingFormatter(logging.Formatter):
    """A formatter whose every line (message and traceback) passes through :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: int = logging.WARNING) -> None:
    """Log to stderr through :class:`RedactingFormatter` (the wire of stdio is stdout).

    Called before the SDK's server is built, whose own set-up then leaves the
    root logger as it finds it.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


# ------------------------------------------------------------------ stdio, answered

# Tokens of a JSON text, scanned without parsing it: a string (perhaps unterminated),
# a structural character, or a run of anything else (a number, true, false, null).
_TOKEN: Final = re.compile(r'"(?:[^"\\]|\\.)*"?|[{}\[\]:,]|[^\s{}\[\]:,"]+')


def _scalar(token: str) -> Any:
    try:
        return pydantic_core.from_json(token)
    except ValueError:
        return None


def envelope(line: str) -> tuple[bool, bool, types.RequestId | None]:
    """Whether the JSON object of ``line`` has a top-level ``method``, and an ``id``,
    and the id (``None`` when it is not a string or a number that can be decoded).

    Found by scanning the tokens of the top level only, so a line whose contents
    cannot be decoded (escapes that are no characters, nesting too deep) still
    tells the request it carries; ``(False, False, None)`` when it is not an object.
    """
    depth = 0
    key: Any = None
    want_key = after_colon = has_method = has_id = False
    request_id: types.RequestId | None = None
    for match in _TOKEN.finditer(line):
        token = match.group()
        if token in ("{", "["):
            if depth == 0 and token != "{":
                return False, False, None
            depth += 1
            want_key = depth == 1
            after_colon = False
            continue
        if depth == 0:
            return False, False, None
        if token in ("}", "]"):
            depth -= 1
            if depth == 0:
                break
            continue
        if depth != 1:
            continue
        if token == ",":
            want_key = True
        elif token == ":":
            after_colon = True
        elif want_key:
            key = _scalar(token)
            want_key = False
            has_method = has_method or key == "method"
            has_id = has_id or key == "id"
        elif after_colon:
            after_colon = False
            if key == "id":
                value = _scalar(token)
                if isinstance(value, str | int) and not isinstance(value, bool):
                    request_id = value
    return has_method, has_id, request_id


def _why(exc: Exception) -> tuple[int, str, bool, types.RequestId | None]:
    """The JSON-RPC error for a line the SDK could not read, whether it is to be
    answered (a request, or a line whose kind cannot be told), and the request's id."""
    if not isinstance(exc, ValidationError):
        return types.PARSE_ERROR, f"the message cannot be read: {exc}", True, None
    for error in exc.errors():
        value = error.get("input")
        if error["type"] == "json_invalid" and isinstance(value, str | bytes):
            line = value if isinstance(value, str) else value.decode("utf-8", "replace")
            has_method, has_id, request_id = envelope(line)
            reason = str(error.get("ctx", {}).get("error") or error["msg"])
            if "recursion limit" in reason:
                reason = "arrays and objects are nested deeper than this server reads"
            elif "surrogate" in reason or "hex escape" in reason:
                reason = (
                    "a \\u escape is not a character (a lone surrogate such as \\ud800?); "
                    "send text as valid Unicode"
                )
            answer = has_id == has_method  # a request, or neither kind
            return types.PARSE_ERROR, f"Parse error: {reason}", answer, request_id
        # a field missing from a member of the union: its input is the message itself
        if error["type"] == "missing" and len(error["loc"]) == 2 and isinstance(value, dict):
            request_id = value.get("id")
            if not isinstance(request_id, str | int) or isinstance(request_id, bool):
                request_id = None
            reason = "not a JSON-RPC 2.0 request, notification or response"
            answer = ("id" in value) == ("method" in value)  # a request, or neither kind
            return types.INVALID_REQUEST, f"Invalid request: {reason}", answer, request_id
    return types.INVALID_REQUEST, "Invalid request", True, None


def _error(request_id: types.RequestId | None, code: int, message: str) -> SessionMessage:
    return SessionMessage(
        types.JSONRPCError(
            jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message)
        )
    )


class _Wrapped:
    """A stream of the SDK's wrapped by one of ours: closing either closes both."""

    _inner: Any

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None


class AnsweringReader(_Wrapped):
    """The read side of the stdio transport: a line the SDK could not read is answered
    here (a JSON-RPC error with the request's id, or a null id when it has none that
    can be found) instead of reaching the server as an exception it drops. A broken
    notification or response gets no answer, as JSON-RPC wants."""

    def __init__(self, inner: Any, write: AnsweringWriter) -> None:
        self._inner = inner
        self._write = write

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item  # type: ignore[no-any-return]
            code, message, answer, request_id = _why(item)
            logger.warning("unreadable message: %s", message)
            if answer:  # not a notification, nor a response of the client's
                await self._write.send(_error(request_id, code, message))

    def __aiter__(self) -> AnsweringReader:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


class AnsweringWriter(_Wrapped):
    """The write side of the stdio transport: a message that cannot be encoded as JSON
    (text holding a lone surrogate, say) would stop the SDK's writer and the server;
    an answer is replaced by a JSON-RPC error for its request, anything else dropped."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def send(self, item: SessionMessage, /) -> None:
        message = item.message
        try:
            message.model_dump_json(by_alias=True, exclude_unset=True)
        except (pydantic_core.PydanticSerializationError, ValueError) as exc:
            logger.warning("an outgoing message cannot be encoded as JSON: %s", exc)
            if not isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
                return
            item = _error(message.id, types.INTERNAL_ERROR, "the answer cannot be encoded as JSON")
        await self._inner.send(item)


async def run_stdio(server: MCPServer[Any]) -> None:
    """Serve ``server`` over stdio until the client goes away, answering every request."""
    lowlevel = server._lowlevel_server  # the SDK's run_stdio_async, with answering streams
    async with stdio_server() as (read_stream, write_stream):
        writer = AnsweringWriter(write_stream)
        await lowlevel.run(
            AnsweringReader(read_stream, writer),
            writer,
            lowlevel.create_initialization_options(),
        )


# ---------------------------------------------------------------- streamable HTTP


def _authority(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def transport_security(host: str, port: int) -> TransportSecuritySettings:
    """The Host and Origin values a request to ``host:port`` (a loopback address or
    ``localhost``) may carry: the bound address itself and the loopback names
    (``localhost``, ``127.0.0.1``, ``[::1]``), in Host with the bound port, in Origin
    with any port (a page served from the same machine, an inspector's say)."""
    names = [_authority(host)]
    names += [n for n in ("localhost", "127.0.0.1", "[::1]") if n not in names]
    hosts = [f"{n}:{port}" for n in names]
    if port == 80:  # a client leaves the default port out
        hosts += names
    origins = [f"http://{n}:*" for n in names] + [f"http://{n}" for n in names]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def run_http(server: MCPServer[Any], host: str, port: int) -> None:
    """Serve ``server`` over streamable HTTP at ``http://host:port/mcp`` until stopped."""
    import uvicorn

    app = server.streamable_http_app(transport_security=transport_security(host, port), host=host)
    # log_config=None: uvicorn's loggers reach the root logger's redacting handler
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", log_config=None)
    await uvicorn.Server(config).serve()
