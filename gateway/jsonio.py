"""JSON values in and out, free of any web framework: what a client may send,
what a stored document may be served as, RFC 3339 timestamps, typed fields.

Every JSON document a client sends (request bodies, the ``metadata`` and
``derived_from`` parts of a publish) goes through :func:`parse_json`, which
refuses what the gateway could not store or serve back: nesting deeper than
:data:`MAX_JSON_DEPTH`, ``NaN``/``Infinity``, ``\\u0000`` and lone surrogates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.errors import InvalidRequest

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in any JSON a client sends."""
MAX_FIELD_CHARS = 200
"""The longest string :func:`field_str` accepts unless told otherwise (lineage ids)."""
STORED_JSON_MAX_DEPTH = 128
"""Deepest nesting served back from a stored document (rows written before the
input limit existed may be deeper than :data:`MAX_JSON_DEPTH`)."""


class JsonRefused(ValueError):
    """A JSON document the gateway will not accept; the message says why."""


def _check_value(value: Any, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth``, and NUL or lone surrogates in any string.

    Neither NUL nor a lone surrogate can be stored (Postgres) or encoded as UTF-8.
    Iterative, so a value that parsed can always be checked.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise JsonRefused(f"nested deeper than {max_depth} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            strings: list[str] = list(item) if isinstance(item, dict) else []
        elif isinstance(item, str):
            strings = [item]
        else:
            continue
        for text in strings:
            if "\x00" in text:
                raise JsonRefused("strings must not contain NUL (\\u0000)")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise JsonRefused("strings must not contain lone surrogates") from None


def _refuse_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"{text} is out of range for a JSON number")
    return value


def parse_json(raw: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a client's JSON document; raise :class:`JsonRefused` with the reason.

    Refused: text that is not UTF-8 or not JSON, nesting deeper than ``max_depth``
    (a document too deep for the parser's recursion is refused the same way),
    ``NaN``/``Infinity``/``-Infinity`` (and numbers that overflow to them), and
    strings holding NUL or lone surrogates.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise JsonRefused("not UTF-8") from None
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except JsonRefused:
        raise
    except RecursionError:
        raise JsonRefused(f"nested deeper than {max_depth} levels") from None
    except ValueError:
        raise JsonRefused("not valid JSON") from None
    _check_value(value, max_depth)
    return value


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stored_json(text: str | None) -> tuple[Any, bool]:
    """A JSON document read back from the database, and whether it can be served.

    Read paths must not fail on what is stored: a document too deep to encode
    again (or otherwise unreadable) comes back as ``(None, False)`` and the caller
    serves the rest of its row without it.
    """
    if text is None:
        return None, True
    try:
        value = json.loads(text)
        _check_value(value, STORED_JSON_MAX_DEPTH)
    except (ValueError, RecursionError):
        return None, False
    return value, True


def field_str(
    data: Mapping[str, Any], key: str, *, required: bool = True, max_len: int = MAX_FIELD_CHARS
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
