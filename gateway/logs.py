"""Structured logs: structlog JSON lines (or console), with bound request context.

Event names are stable (``http.request``, ``artifact.published``, ``lease.rejected``
…). Tokens, ``Authorization``, lease headers and URL signatures are never passed
to a logger; :func:`redact` scrubs anything that looks like one as a last line of
defence.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRETISH = re.compile(r"(eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*|([?&]sig=)[^&\s]+)")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRETISH.sub(lambda m: (m.group(2) or "") + "[redacted]", value)
    return value


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        event[key] = _scrub(value)
    return event


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # One write per line (message and newline together): workers of
        # `serve --workers N` share stderr, and print()'s two writes could
        # interleave lines of different processes.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "gateway") -> Any:
    return structlog.get_logger(name)
