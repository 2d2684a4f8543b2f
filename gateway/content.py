"""Media types: what a publish declares, what its bytes look like, and how it is served.

This module is the one place for the serving policy (docs/api.md, *Reading*):

* ``resolve_mime`` — the artifact's mime: the part's ``Content-Type`` unless it is
  absent or ``application/octet-stream``, then a guess from the name, else
  ``application/octet-stream``.
* ``sniff`` — the first bytes (4 KiB) are identified at publish time with two
  maintained signature libraries (``filetype`` for binary formats, puremagic for
  markup), and the verdict "the bytes agree with the declared mime" is recorded
  with the artifact.
* ``INLINE_MEDIA`` / ``INLINE_TEXT`` — the safe-preview allowlist. Everything else,
  and anything whose bytes contradicted its mime, is served as an attachment.
* ``JAVASCRIPT_MIMES`` / ``ACTIVE_MIMES`` — never sent with their own type. The
  JavaScript list is the whole "JavaScript MIME type" list of the WHATWG MIME
  Sniffing standard: with ``nosniff`` a browser runs a response as script (classic,
  module or worker) only when its Content-Type is one of these, so a content answer
  is never one of them, whatever the artifact's mime (compared case-insensitively,
  parameters stripped: :func:`essence`). The other active types are markup that
  renders or runs (HTML, XHTML, SVG, XML), the types a page loads as XSLT
  (``text/xsl``, ``application/xslt+xml``) and WebAssembly (``application/wasm``).
  CSS is source code, served as ``text/plain`` (never ``text/css``, so no page
  loads it as a stylesheet); JSON modules run no code, and JSON is ``text/plain``.
* ``presentation`` — the disposition and Content-Type actually sent.
* ``mime_class`` — the coarse class used by the list filter.
"""

from __future__ import annotations

import codecs
import mimetypes
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

import filetype
import puremagic

OCTET_STREAM = "application/octet-stream"
SNIFF_BYTES = 4096

# Raster images, video and audio that browsers render without running anything.
INLINE_MEDIA = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/apng",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
        "audio/webm",
        "audio/flac",
        "audio/aac",
        "audio/mp4",
    }
)

# Text shown inline, always re-labelled ``text/plain; charset=utf-8``.
INLINE_TEXT = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})

# Source code: shown inline as plain text too (never executed: CSP sandbox + nosniff).
CODE_MIMES = frozenset(
    {
        "text/x-python",
        "text/x-script.python",
        "text/x-c",
        "text/x-csrc",
        "text/x-chdr",
        "text/x-c++src",
        "text/x-c++hdr",
        "text/x-java",
        "text/x-java-source",
        "text/x-go",
        "text/x-rust",
        "text/x-shellscript",
        "text/x-sh",
        "application/x-sh",
        "text/x-yaml",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "text/x-toml",
        "text/x-diff",
        "text/x-patch",
        "text/x-sql",
        "application/sql",
        "text/x-ruby",
        "text/x-perl",
        "text/x-lua",
        "text/x-kotlin",
        "text/x-scala",
        "text/x-typescript",
        "application/typescript",
        "text/css",
    }
)
# The WHATWG MIME Sniffing standard's "JavaScript MIME type" list (§ 4.6): what a
# browser runs as script. A content answer never carries one of them.
JAVASCRIPT_MIMES = frozenset(
    {
        "application/ecmascript",
        "application/javascript",
        "application/x-ecmascript",
        "application/x-javascript",
        "text/ecmascript",
        "text/javascript",
        "text/javascript1.0",
        "text/javascript1.1",
        "text/javascript1.2",
        "text/javascript1.3",
        "text/javascript1.4",
        "text/javascript1.5",
        "text/jscript",
        "text/livescript",
        "text/x-ecmascript",
        "text/x-javascript",
    }
)
# Never inline, never sent with their own type, whatever the bytes say: they run
# script, render active content, or are loaded by a page as code (XSLT,
# WebAssembly). PDF is the exception: attachment, but labelled as itself. (CSS is
# source code: shown as text/plain, or octet-stream when its bytes disagree; never
# text/css.)
ACTIVE_MIMES = JAVASCRIPT_MIMES | frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "application/wasm",
        "application/pdf",
    }
)

_EXTRA_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".json": "application/json",
    ".log": "text/plain",
    ".txt": "text/plain",
    ".py": "text/x-python",
    ".go": "text/x-go",
    ".rs": "text/x-rust",
    ".ts": "text/x-typescript",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
    ".sql": "application/sql",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".apng": "image/apng",
    ".flac": "audio/flac",
    ".svg": "image/svg+xml",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
}

# puremagic names some formats differently from their registered types.
_SNIFF_ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/mp3": "audio/mpeg",
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "video/x-m4v": "video/mp4",
    "audio/x-m4a": "audio/mp4",
    "audio/x-aac": "audio/aac",
    "application/ogg": "audio/ogg",
}


# RFC 6838 §4.2 restricted-name, ASCII only: type "/" subtype.
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def essence(value: str) -> str:
    """A media type's essence for comparison: lower case, parameters and blanks stripped
    (``Text/JavaScript1.5 ; charset=x`` → ``text/javascript1.5``)."""
    return value.split(";", 1)[0].strip().lower()


def normalise_mime(value: str | None) -> str | None:
    """``Type/Sub; params`` → ``type/sub``; None for anything that is not a media type."""
    if not value:
        return None
    mime = essence(value)
    if len(mime) > 127 or not _MEDIA_TYPE.fullmatch(mime):
        return None
    return mime


def is_javascript(value: str) -> bool:
    """Whether a browser would run a response of this type as script."""
    return essence(value) in JAVASCRIPT_MIMES


def guess_mime(name: str) -> str:
    dot = name.rfind(".")
    if dot > 0:
        ext = name[dot:].lower()
        if ext in _EXTRA_TYPES:
            return _EXTRA_TYPES[ext]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return normalise_mime(guessed) or OCTET_STREAM


def resolve_mime(declared: str | None, name: str) -> str:
    mime = normalise_mime(declared)
    if mime is None or mime == OCTET_STREAM:
        return guess_mime(name)
    return mime


def is_textual(mime: str) -> bool:
    return mime in INLINE_TEXT or mime in CODE_MIMES or mime.startswith("text/")


def mime_class(mime: str) -> str:
    if mime in ("text/html", "application/xhtml+xml"):
        return "html"
    if mime.startswith("image/"):
        return "image"
    if mime in CODE_MIMES or mime in JAVASCRIPT_MIMES:
        return "code"
    if mime in INLINE_TEXT or mime.startswith("text/"):
        return "text"
    return "other"


@dataclass(frozen=True, kw_only=True)
class SniffResult:
    sniffed_mime: str | None  # what the signature database recognised, if anything
    agrees: bool  # the bytes are consistent with the declared mime


def _is_utf8_text(head: bytes, complete: bool) -> bool:
    if b"\x00" in head:
        return False
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        decoder.decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _normalised(found: str | None) -> str | None:
    mime = normalise_mime(found)
    return _SNIFF_ALIASES.get(mime, mime) if mime else None


def _binary_signature(head: bytes) -> str | None:
    """Binary formats (images, audio, video, archives…): ``filetype``, a few µs."""
    return _normalised(filetype.guess_mime(head)) if head else None


def _markup_signature(head: bytes) -> str | None:
    """Markup and other text-like formats (HTML, SVG, XML…): puremagic's database.

    It scans thousands of signatures (~0.25 ms), so it runs only on text that
    could be markup at all: text with a ``<`` in it.
    """
    if b"<" not in head:
        return None
    try:
        return _normalised(puremagic.from_string(head, mime=True))
    except (puremagic.PureError, ValueError):
        return None


# Containers that carry either audio or video: the declared one is fine.
_SAME_CONTAINER = (
    frozenset({"video/mp4", "audio/mp4", "video/x-m4v"}),
    frozenset({"video/webm", "audio/webm"}),
    frozenset({"audio/ogg", "video/ogg"}),
    frozenset({"image/png", "image/apng"}),
)


def _same_media(sniffed: str | None, declared: str) -> bool:
    if sniffed is None:
        return False
    return sniffed == declared or any(
        sniffed in family and declared in family for family in _SAME_CONTAINER
    )


def sniff(head: bytes, declared: str, *, complete: bool) -> SniffResult:
    """Judge whether the first bytes agree with ``declared``.

    ``complete`` says ``head`` is the whole body (so a trailing multibyte UTF-8
    sequence cannot be cut off). Media types must be recognised as that format
    (the ``filetype`` signature library); text types must be UTF-8 without NUL
    bytes, no recognised binary format, and no active markup (HTML, SVG, XML —
    puremagic's signature database). For other types the verdict is only
    informative: they are attachments anyway.
    """
    sniffed = _binary_signature(head)
    if declared in INLINE_MEDIA:
        agrees = _same_media(sniffed, declared)
    elif is_textual(declared) and declared not in ACTIVE_MIMES:
        agrees = sniffed is None and _is_utf8_text(head, complete)
        if agrees:
            sniffed = _markup_signature(head)
            agrees = sniffed is None or (
                sniffed not in ACTIVE_MIMES
                and (sniffed.startswith("text/") or sniffed == "application/json")
            )
    else:
        agrees = sniffed is None or sniffed == declared
    return SniffResult(sniffed_mime=sniffed, agrees=agrees)


# Headers on every content response (200, 206, 304, HEAD; by token or signed URL),
# whatever the artifact. ``nosniff`` with a Content-Type that is never a JavaScript
# MIME type (:func:`presentation`): no page can run the bytes as a script. The
# ``sandbox`` policy: opened as a page, they run nothing and load only themselves
# (``img-src``/``media-src 'self'`` keep the browser's own image and media viewer).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
        "sandbox; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-site",
    "Cache-Control": "private, no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Accept-Ranges": "bytes",
}
TEXT_PLAIN_UTF8 = "text/plain; charset=utf-8"


@dataclass(frozen=True, kw_only=True)
class Presentation:
    disposition: str  # inline | attachment
    content_type: str


def presentation(mime: str, content_agrees: bool, *, pdf_inline: bool = False) -> Presentation:
    """Inline or attachment, and the Content-Type to send: the gateway's decision alone.

    Inline only for the allowlist, and only when the bytes agreed with the mime at
    publish time; text and source code are re-labelled ``text/plain; charset=utf-8``.
    Attachments keep their mime, except :data:`ACTIVE_MIMES` (HTML, XHTML, SVG, XML,
    XSLT, WebAssembly and every JavaScript MIME type) and bytes that
    contradicted their mime, which go out as ``application/octet-stream``. The
    mime is compared by its :func:`essence`, so no spelling of an active type (case,
    parameters) keeps its own label; and whatever the mime, the Content-Type sent
    is never a JavaScript MIME type, so with ``nosniff`` no content answer can run
    as a script of this origin.
    """
    mime = essence(mime)
    if content_agrees:
        if mime in INLINE_MEDIA:
            return Presentation(disposition="inline", content_type=mime)
        if mime in INLINE_TEXT or mime in CODE_MIMES:
            return Presentation(disposition="inline", content_type=TEXT_PLAIN_UTF8)
        if pdf_inline and mime == "application/pdf":
            return Presentation(disposition="inline", content_type=mime)
    risky = (
        not content_agrees
        or not _MEDIA_TYPE.fullmatch(mime)
        or (mime in ACTIVE_MIMES and mime != "application/pdf")
    )
    return Presentation(disposition="attachment", content_type=OCTET_STREAM if risky else mime)


_FALLBACK_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$&+,-.=@[]^_`{}~()'"
)


def content_disposition(disposition: str, name: str) -> str:
    """RFC 6266 ``Content-Disposition`` that no name can break out of.

    The quoted ``filename`` is an ASCII fallback built from an allowlist of
    characters (no quote, backslash, CR, LF, ``;`` or ``%``); ``filename*`` carries
    the real name percent-encoded as UTF-8 (RFC 8187), so it holds only
    unreserved ASCII and ``%XX``.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    fallback = "".join(c if c in _FALLBACK_SAFE else "_" for c in decomposed if not _is_mark(c))
    fallback = fallback.strip() or "artifact"
    encoded = quote(name, safe="")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")
