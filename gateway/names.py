"""Artifact names: normalised once at publish time, never trusted as a path.

A name is the last path component of what the client sent (both ``/`` and ``\\``
separate components), Unicode NFC, trimmed of surrounding white space, 1 to 255
characters, and free of NUL and control characters (a name containing one is
refused rather than silently changed, so what is stored is what was meant).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_to_bytes

MAX_NAME_CHARS = 255


class InvalidName(ValueError):
    """The name cannot be an artifact name; the message says why."""


def _is_control(char: str) -> bool:
    # Cs: a lone surrogate, which is what bytes that are not UTF-8 become in a header
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") or char == "\x7f"


def normalise_name(raw: str) -> str:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
        raise InvalidName("name is not UTF-8")
    name = unicodedata.normalize("NFC", raw)
    if any(_is_control(c) for c in name):
        raise InvalidName("name must not contain NUL or control characters")
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        raise InvalidName("name is empty once path components are stripped")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidName(f"name is longer than {MAX_NAME_CHARS} characters")
    return name


# One parameter of a Content-Disposition header: a quoted string or a token.
_DISPOSITION_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.DOTALL)
# The WHATWG multipart/form-data encoding that browsers, curl, requests and Node
# use: a filename's '"', CR and LF are sent as %22, %0D and %0A (nothing else is
# percent-encoded, so nothing else is decoded).
_WHATWG_ESCAPES = re.compile(r"%(22|0d|0a)", re.IGNORECASE)
_WHATWG_CHARS = {"22": '"', "0d": "\r", "0a": "\n"}


def _unquote(value: str) -> str:
    """A quoted-string's content; only ``\\"`` and ``\\\\`` are escapes.

    Browsers send a Windows path's backslashes as they are (``C:\\Users\\me``),
    so any other backslash is a literal one, not an escape.
    """
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r'\\(["\\])', r"\1", value[1:-1])
    return value.strip()


def file_part_filename(disposition: str) -> str | None:
    """The filename a multipart file part's ``Content-Disposition`` declares, or None.

    ``filename*`` (RFC 5987, UTF-8) wins over ``filename``. A ``filename`` has
    the WHATWG escapes ``%22``, ``%0D`` and ``%0A`` decoded (a CR or LF then makes
    :func:`normalise_name` refuse it). Raises :class:`InvalidName` when the bytes
    sent are not UTF-8. The result is not normalised yet.
    """
    params: dict[str, str] = {}
    for match in _DISPOSITION_PARAM.finditer(disposition):
        params.setdefault(match.group(1).lower(), match.group(2).strip())
    if "filename*" in params:
        charset, _, rest = _unquote(params["filename*"]).partition("'")
        _language, _, encoded = rest.partition("'")
        if charset.lower() != "utf-8":
            raise InvalidName("filename* must be UTF-8")
        try:
            return unquote_to_bytes(encoded).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidName("filename* is not UTF-8") from None
    if "filename" not in params:
        return None
    filename = _WHATWG_ESCAPES.sub(
        lambda m: _WHATWG_CHARS[m.group(1).lower()], _unquote(params["filename"])
    )
    if any(0xD800 <= ord(c) <= 0xDFFF for c in filename):
        raise InvalidName("filename is not UTF-8")
    return filename
