"""Property tests: names and Content-Disposition hold their promises for any input."""

from urllib.parse import unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.content import content_disposition
from gateway.names import InvalidName, normalise_name

names = st.text(min_size=0, max_size=400)


@given(names)
@settings(max_examples=500)
def test_a_normalised_name_is_a_clean_basename(raw: str) -> None:
    try:
        name = normalise_name(raw)
    except InvalidName:
        return
    assert 1 <= len(name) <= 255
    assert "/" not in name and "\\" not in name
    assert name not in (".", "..")
    assert name == name.strip()
    assert not any(ord(c) < 32 or ord(c) == 127 for c in name)
    assert normalise_name(name) == name  # idempotent


@given(names.filter(lambda s: s != ""), st.sampled_from(["inline", "attachment"]))
@settings(max_examples=500)
def test_content_disposition_never_breaks_out(name: str, disposition: str) -> None:
    value = content_disposition(disposition, name)
    assert "\r" not in value and "\n" not in value
    assert value.isascii()
    head, filename, star = value.split("; ")
    assert head == disposition
    assert filename.startswith('filename="') and filename.endswith('"')
    inner = filename[len('filename="') : -1]
    assert '"' not in inner and "\\" not in inner and ";" not in inner
    assert star.startswith("filename*=UTF-8''")
    encoded = star[len("filename*=UTF-8''") :]
    assert all(c.isalnum() or c in "%-._~" for c in encoded)
    assert unquote(encoded, errors="strict") == name  # the real name round-trips
