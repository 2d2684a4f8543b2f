"""Structured logs: structlog JSON lines (or console lines), with bound request context.

Event names are stable (``http.request``, ``artifact.published``, ``lease.rejected``
…). Tokens, ``Authorization``, lease headers and URL signatures are never passed
to a logger; :func:`redact` scrubs anything that looks like one as a last line of
defence, and the credentials of any URL (``user:password@`` and the query string,
e.g. of ``GATEWAY_DATABASE_URL`` or an S3 endpoint in a library's error) with
:func:`redact_urls`, which also guards the command line's error lines.

Libraries log through the standard library (``aiohttp.server``, ``asyncio``,
``asyncpg``, Python warnings …): :func:`configure_logging` puts one handler on the
root logger that renders each record through the same processors — one JSON line
with ``logger`` (the record's name), ``level``, ``ts``, the message as ``event``
and any traceback in ``exception`` — so stderr holds nothing but JSON lines.
Below ``info``, the S3 client libraries stay quiet: their debug records carry
request signatures and bodies.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRETISH = re.compile(r"(eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*|([?&]sig=)[^&\s]+)")
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>\\`]*")


def _redact_url(match: re.Match[str]) -> str:
    scheme, _, rest = match.group().partition("://")
    # everything up to the last "@" may be credentials (a password may hold "@", "/", "?")
    if "@" in rest:
        rest = "[redacted]" + rest[rest.rindex("@") :]
    if "?" in rest:
        rest = rest[: rest.index("?")] + "?[redacted]"
    return f"{scheme}://{rest}"


def redact_urls(text: str) -> str:
    """``text`` with every URL's userinfo and query string replaced by ``[redacted]``."""
    return _URL.sub(_redact_url, text) if "://" in text else text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact_urls(_SECRETISH.sub(lambda m: (m.group(2) or "") + "[redacted]", value))
    return value


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        event[key] = _scrub(value)
    return event


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's one-write-per-line logger, with the name ``add_logger_name`` reads."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(self._file, str(args[0]) if args else "gateway")


# Their debug records carry signed request headers and bodies: never below info.
QUIET_BELOW_INFO = ("botocore", "aiobotocore", "s3transfer", "urllib3")
_HANDLER_NAME = "gateway.stdlib"


def configure_logging(level: str = "info", fmt: str = "json", *, colors: bool = True) -> None:
    """Lines on stderr: JSON, or ``console`` lines for people (coloured when stderr is
    a terminal and ``colors`` holds: NO_COLOR unset)."""
    threshold = logging.getLevelNamesMapping()[level.upper()]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(
            colors=colors and sys.stderr.isatty(), timestamp_key="ts"
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        # One write per line (message and newline together): workers of
        # `serve --workers N` share stderr, and print()'s two writes could
        # interleave lines of different processes.
        logger_factory=_NamedWriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(threshold, renderer)


def _route_stdlib_logging(threshold: int, renderer: Any) -> None:
    """Every standard-library record: one line rendered like the gateway's own."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact,
            renderer,
        ],
    )
    # StreamHandler writes the line and its newline in one write().
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in QUIET_BELOW_INFO:
        logging.getLogger(name).setLevel(max(threshold, logging.INFO))
    # warnings.warn() output as records of the "py.warnings" logger, not bare lines
    logging.captureWarnings(True)


def get_logger(name: str = "gateway") -> Any:
    return structlog.get_logger(name)
