"""``mobius_artifacts.errors.redact``: the credentials of a URL (userinfo, query) never
reach an error message, a CLI line or a log line of the client."""

from __future__ import annotations

import logging
import sys

import pytest
from mobius_artifacts import ArtifactError, ConfigurationError, Unavailable
from mobius_artifacts.config import resolve
from mobius_artifacts.errors import redact
from mobius_artifacts.mcp_transport import RedactingFormatter


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "gateway at http://user:pw@gw:8080/ unreachable",
            "gateway at http://***@gw:8080/ unreachable",
        ),
        ("https://gw/v1/x?sig=abc&exp=1 failed", "https://gw/v1/x?*** failed"),
        ("URL('http://u:pw@h/p?token=t#frag')", "URL('http://***@h/p?***')"),
        ("http://u:p@ss@h/", "http://***@h/"),  # an unescaped @ in the password
        ("http://u:p/w@h/", "http://***@h/"),  # an unescaped / in the password
        ("two: http://a:b@x and HTTPS://c:d@y?q", "two: http://***@x and HTTPS://***@y?***"),
        ("postgresql://app:pw@db:5432/gw?sslmode=require", "postgresql://***@db:5432/gw?***"),
        ("http://gw:8080/v1/projects/p", "http://gw:8080/v1/projects/p"),
        ("no URL here: user:pw@host", "no URL here: user:pw@host"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_every_client_error_is_redacted() -> None:
    for cls in (ArtifactError, Unavailable, ConfigurationError):
        error = cls("gateway at http://user:pw@gw/ unreachable: GET http://gw/x?sig=s failed")
        for text in (error.detail, str(error), repr(error.args), str(error.as_dict())):
            assert "pw" not in text and "sig=s" not in text, text


def test_configuration_errors_hide_the_credentials() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve(
            "ftp://user:pw@gw/", token="t", lease_token=None, project="p", ca_bundle=None, env={}
        )
    assert "pw" not in str(info.value) and "***@gw" in str(info.value)
    # credentials in the URL cannot travel with a bearer token: refused, redacted
    with pytest.raises(ConfigurationError) as info:
        resolve(
            "http://user:pw@gw/", token="t", lease_token=None, project="p", ca_bundle=None, env={}
        )
    assert "pw" not in str(info.value) and "Authorization" in str(info.value)


def test_the_mcp_log_formatter_redacts_messages_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s")
    try:
        raise ValueError("cannot reach http://user:pw@gw/?token=tk")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed for %s", ("http://a:pw@b/",), None
        )
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert "ValueError" in line and "http://***@gw/?***" in line
    assert "pw" not in line and "tk" not in line


def test_the_settings_repr_shows_no_credential() -> None:
    settings = resolve(
        "http://user:pw@gw/",
        token=None,
        lease_token="eyJhbGciOiJIUzI1NiJ9.eyJwcmoiOiJwIn0.c2ln",
        project=None,
        ca_bundle=None,
        env={"HTTP_PROXY": "http://proxy-user:proxy-pw@proxy:3128"},
    )
    text = repr(settings)
    assert "http://***@gw/" in text and "project='p'" in text and "lease_token=***" in text
    assert "pw" not in text and "c2ln" not in text
