"""Artifact names: normalised once at publish time, never trusted as a path.

A name is the last path component of what the client sent (both ``/`` and ``\\``
separate components), Unicode NFC, trimmed of surrounding white space, 1 to 255
characters, and free of NUL and control characters (a name containing one is
refused rather than silently changed, so what is stored is what was meant).
"""

from __future__ import annotations

import unicodedata

MAX_NAME_CHARS = 255


class InvalidName(ValueError):
    """The name cannot be an artifact name; the message says why."""


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") or char == "\x7f"


def normalise_name(raw: str) -> str:
    name = unicodedata.normalize("NFC", raw)
    if any(_is_control(c) for c in name):
        raise InvalidName("name must not contain NUL or control characters")
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        raise InvalidName("name is empty once path components are stripped")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidName(f"name is longer than {MAX_NAME_CHARS} characters")
    return name
