import pytest

from gateway import content
from gateway.names import InvalidName, normalise_name

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.md", "report.md"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\evil.exe", "evil.exe"),
        ("  spaced.txt  ", "spaced.txt"),
        ("e\u0301t\u00e9.txt", "\u00e9t\u00e9.txt"),
    ],
)
def test_names_are_basenames(raw: str, expected: str) -> None:
    assert normalise_name(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "/", "dir/..", "a\x00b", "a\nb", "a\rb", "x" * 256, "\u202eexe.txt"]
)
def test_bad_names_are_refused(raw: str) -> None:
    with pytest.raises(InvalidName):
        normalise_name(raw)


def test_mime_from_part_or_name() -> None:
    assert content.resolve_mime("image/png", "x.bin") == "image/png"
    assert content.resolve_mime("application/octet-stream", "notes.md") == "text/markdown"
    assert content.resolve_mime(None, "data.csv") == "text/csv"
    assert content.resolve_mime(None, "blob") == "application/octet-stream"
    assert content.resolve_mime("Text/Plain; charset=utf-8", "x") == "text/plain"
    assert content.resolve_mime("not a mime", "a.json") == "application/json"


def test_sniff_agrees_and_contradicts() -> None:
    assert content.sniff(PNG, "image/png", complete=True).agrees
    html = b"<!DOCTYPE html><html><script>alert(1)</script></html>"
    fake_png = content.sniff(html, "image/png", complete=True)
    assert not fake_png.agrees
    assert content.sniff("h\u00e9llo".encode(), "text/plain", complete=True).agrees
    assert not content.sniff(b"\xff\xfe\x00bin", "text/plain", complete=True).agrees
    assert not content.sniff(PNG, "text/plain", complete=True).agrees
    # a multibyte character cut at the end of the sniffed head is still text
    assert content.sniff("\u00e9".encode()[:1], "text/plain", complete=False).agrees


def test_mime_classes() -> None:
    assert content.mime_class("image/svg+xml") == "image"
    assert content.mime_class("text/html") == "html"
    assert content.mime_class("text/x-python") == "code"
    assert content.mime_class("text/markdown") == "text"
    assert content.mime_class("application/zip") == "other"
