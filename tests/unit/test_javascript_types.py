"""No content answer is labelled with a type a browser runs as script.

The WHATWG MIME Sniffing standard's whole "JavaScript MIME type" list is active:
with ``nosniff`` a browser runs a response as script only when its Content-Type is
on that list, so the serving policy must never send one, however the artifact's
mime is spelled and whatever its bytes.
"""

from __future__ import annotations

import itertools

import pytest

from gateway import content

# The list as the standard gives it (https://mimesniff.spec.whatwg.org/#javascript-mime-type).
WHATWG_JAVASCRIPT = [
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
]
# Everything the standard calls a JavaScript type, and what the gateway adds.
OTHER_ACTIVE = [
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/xsl",
    "application/xslt+xml",
    "application/wasm",
]


def test_the_list_is_the_standards_list() -> None:
    assert set(WHATWG_JAVASCRIPT) == content.JAVASCRIPT_MIMES
    assert content.JAVASCRIPT_MIMES <= content.ACTIVE_MIMES


def spellings(mime: str) -> list[str]:
    return [mime, mime.upper(), mime.title(), f"{mime}; charset=utf-8", f" {mime.upper()} ;x=1"]


@pytest.mark.parametrize("mime", WHATWG_JAVASCRIPT + OTHER_ACTIVE)
@pytest.mark.parametrize("agrees", [True, False])
@pytest.mark.parametrize("pdf_inline", [True, False])
def test_active_types_are_octet_stream_attachments(
    mime: str, agrees: bool, pdf_inline: bool
) -> None:
    for spelled in spellings(mime):
        shown = content.presentation(spelled, agrees, pdf_inline=pdf_inline)
        assert shown.disposition == "attachment", spelled
        assert shown.content_type == content.OCTET_STREAM, spelled


@pytest.mark.parametrize("mime", WHATWG_JAVASCRIPT)
def test_javascript_is_recognised_however_spelled(mime: str) -> None:
    for spelled in spellings(mime):
        assert content.is_javascript(spelled)
        assert content.essence(spelled) == mime
    assert content.mime_class(mime) == "code"


def test_javascript_names_resolve_to_an_active_type() -> None:
    for name in ("app.js", "lib.mjs"):
        assert content.is_javascript(content.resolve_mime(None, name))


# Every mime a publish could record: the known ones and a spread of others.
KNOWN = sorted(
    content.INLINE_MEDIA
    | content.INLINE_TEXT
    | content.CODE_MIMES
    | content.ACTIVE_MIMES
    | {"application/zip", "application/octet-stream", "text/x-unknown", "font/woff2"}
)


@pytest.mark.parametrize(
    ("mime", "agrees", "pdf_inline"),
    list(itertools.product(KNOWN, [True, False], [True, False])),
)
def test_no_content_type_sent_is_one_a_browser_runs(
    mime: str, agrees: bool, pdf_inline: bool
) -> None:
    shown = content.presentation(mime, agrees, pdf_inline=pdf_inline)
    assert not content.is_javascript(shown.content_type)
    assert content.essence(shown.content_type) not in {"text/css", "text/html", "image/svg+xml"}


def test_every_content_answer_is_sandboxed_and_nosniff() -> None:
    headers = content.SECURITY_HEADERS
    assert headers["X-Content-Type-Options"] == "nosniff"
    directives = [d.strip() for d in headers["Content-Security-Policy"].split(";")]
    assert "sandbox" in directives
    assert "default-src 'none'" in directives
    assert not any("script-src" in d for d in directives)
