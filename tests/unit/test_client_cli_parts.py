"""Pure parts of the ``mobius-artifacts`` command line: how a transport failure is said,
where global options may stand, when a progress bar is drawn."""

from __future__ import annotations

import errno
import io
from typing import Any

import aiohttp
import pytest
from mobius_artifacts import cli
from mobius_artifacts.transport import Stalled, describe_failure
from yarl import URL

BASE = URL("http://gw.example:8080")


class _Key:
    """The part of a connection key aiohttp's connector errors read."""

    host, port, ssl = "gw.example", 8080, True


def connector_error(cls: type[aiohttp.ClientConnectorError], os_error: OSError) -> Any:
    return cls(_Key(), os_error)  # type: ignore[arg-type]


def test_every_transport_failure_names_the_gateway_and_what_happened() -> None:
    refused = connector_error(
        aiohttp.ClientConnectorError, ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    )
    assert describe_failure(refused, BASE) == (
        "cannot reach the gateway at http://gw.example:8080: connection refused (is it running?)"
    )
    unreachable = connector_error(
        aiohttp.ClientConnectorError, OSError(errno.EHOSTUNREACH, "No route to host")
    )
    assert describe_failure(unreachable, BASE).endswith(": No route to host")
    dns = connector_error(aiohttp.ClientConnectorDNSError, OSError(-2, "Name does not resolve"))
    assert "the name gw.example does not resolve" in describe_failure(dns, BASE)
    assert "did not answer in time" in describe_failure(TimeoutError(), BASE)
    assert "no progress for 5 s" in describe_failure(Stalled("no progress for 5 s"), BASE)
    for cause in (refused, unreachable, dns, TimeoutError(), None):
        assert str(BASE) in describe_failure(cause, BASE)


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "http://a", "--retries", "2", "--json", "quota"],
        ["quota", "--url", "http://a", "--retries", "2", "--json"],
        ["--url", "http://a", "quota", "--retries", "2", "--json"],
    ],
)
def test_global_options_stand_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    cli._with_defaults(args)
    assert (args.url, args.retries, args.json, args.token, args.no_progress) == (
        "http://a",
        2,
        True,
        None,
        False,
    )


def test_defaults_apply_when_no_global_option_is_given() -> None:
    args = cli.build_parser().parse_args(["ls"])
    cli._with_defaults(args)
    assert {k: getattr(args, k) for k in cli.GLOBAL_DEFAULTS} == cli.GLOBAL_DEFAULTS


def test_a_progress_bar_only_above_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr("sys.stderr", screen)
    small = cli.ProgressBar("s", enabled=True)
    for done in range(0, cli.PROGRESS_MIN_BYTES + 1, 1024 * 1024):
        small(done, cli.PROGRESS_MIN_BYTES)
    small.close()
    unknown = cli.ProgressBar("u", enabled=True)  # stdin: no size known
    unknown(1024, None)
    assert screen.getvalue() == ""
    unknown(cli.PROGRESS_MIN_BYTES + 1, None)  # larger than the threshold: a bar now
    unknown.close()
    big = cli.ProgressBar("b", enabled=True)
    big(0, cli.PROGRESS_MIN_BYTES + 1)
    big.close()
    assert "u:" in screen.getvalue() and "b:" in screen.getvalue()
    off = cli.ProgressBar("off", enabled=False)
    off(0, 10 * cli.PROGRESS_MIN_BYTES)
    off.close()
    assert "off:" not in screen.getvalue()
