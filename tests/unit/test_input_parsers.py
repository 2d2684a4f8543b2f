"""The pure parsers of client input: bounded ASCII numbers, byte ranges, signed-URL
parameters, id shapes matched whole, token buckets; and a scan of the sources that
keeps every regular expression free of ``$`` anchors and ``\\d``."""

from __future__ import annotations

import ast
import re
import re._constants as sre_constants
import re._parser as sre_parse
from pathlib import Path

import pytest
from mobius_artifacts.transport import decimal, retry_after

from gateway import signing
from gateway.api.content import BEYOND_ANY_SIZE, parse_range
from gateway.config import Config, ConfigError
from gateway.errors import RangeNotSatisfiable
from gateway.ids import ARTIFACT_ID, ARTIFACT_TYPE, LEASE_ID, PROJECT_ID
from gateway.jsonio import JsonRefused, parse_json
from gateway.numbers import MAX_DIGITS, parse_decimal
from gateway.ratelimit import TokenBuckets
from leases import COMPACT_JWT

ROOT = Path(__file__).resolve().parents[2]
UNICODE_DIGITS = ["\u0661", "\u00b2", "\uff11", "\u0967", "1\u0662", "\U0001d7d9"]
NOT_NUMBERS = ["", " 1", "1 ", "+1", "-1", "1_0", "0x1", "1\n", "\n1", "1.0", "1e3", "١٢"]


@pytest.mark.parametrize("text", ["0", "7", "0042", "9" * MAX_DIGITS, str(2**63 - 1)])
def test_parse_decimal_takes_ascii_digits(text: str) -> None:
    assert parse_decimal(text) == int(text)


@pytest.mark.parametrize("text", [*UNICODE_DIGITS, *NOT_NUMBERS, "9" * 20, "9" * 5000])
def test_parse_decimal_refuses_the_rest(text: str) -> None:
    assert parse_decimal(text) is None


def test_parse_decimal_digit_bound_is_its_argument() -> None:
    assert parse_decimal("1" * 12, max_digits=12) == int("1" * 12)
    assert parse_decimal("1" * 13, max_digits=12) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=90-", (90, 99)),
        ("bytes=-10", (90, 99)),
        (" bytes = 1 - 2 ", (1, 2)),
        ("bytes=\t1-2", (1, 2)),
        ("bytes=0-" + "9" * 5000, (0, 99)),
        ("bytes=-" + "9" * 5000, (0, 99)),
        ("bytes=5-" + "9" * 19, (5, 99)),
    ],
)
def test_ranges_that_are_served(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=\u0661-\u0662",
        "bytes=1-\u0662",
        "bytes=\u0661-",
        "bytes=-\u0662",
        "bytes=\u00b2-",
        "bytes=1-2\n",
        "bytes=1-2\r",
        "\nbytes=1-2",
        "bytes=\u00a01-2",  # NBSP is not OWS
        "bytes=1-2, 4-5",
        "bytes=5-1",
        "items=1-2",
        "bytes=-",
    ],
)
def test_ranges_that_are_ignored(header: str) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize(
    "header", ["bytes=100-", "bytes=" + "9" * 20 + "-", "bytes=" + "9" * 5000 + "-", "bytes=-0"]
)
def test_ranges_that_are_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, 100)
    assert caught.value.headers == {"Content-Range": "bytes */100"}


def test_a_position_past_int64_is_past_any_size() -> None:
    assert BEYOND_ANY_SIZE > 2**63 - 1


@pytest.mark.parametrize(
    "exp", ["\u0661\u0662\u0663", "1" * 13, "9" * 5000, " 1", "1\n", "+1", "", "1.5"]
)
def test_signed_url_exp_must_be_ascii_digits(exp: str) -> None:
    with pytest.raises(ValueError):
        signing.parse({"exp": exp, "kid": "url-1", "sig": "abc"})


def test_signed_url_exp_of_ascii_digits() -> None:
    params = signing.parse({"exp": "1796230443", "kid": "url-1", "sig": "abc"})
    assert params is not None and params.exp == 1796230443


@pytest.mark.parametrize(
    ("pattern", "valid"),
    [
        (PROJECT_ID, "demo"),
        (ARTIFACT_ID, "art_01M8VTS1HFGRR0HPSK9EG0TGCX"),
        (LEASE_ID, "lse_01M8VTS1H21V9YNZ3SXPVKC2X1"),
        (ARTIFACT_TYPE, "report"),
        (COMPACT_JWT, "eyJh.eyJz.c2ln"),
    ],
)
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", " ", "\u0661"])
def test_ids_are_matched_whole(pattern: re.Pattern[str], valid: str, suffix: str) -> None:
    assert pattern.fullmatch(valid)
    assert not pattern.fullmatch(valid + suffix)
    assert not pattern.fullmatch(suffix + valid)


@pytest.mark.parametrize("text", ['{"a": \u0661}', '{"a": 1\u0662}', '{"a": ' + "9" * 5000 + "}"])
def test_json_numbers_are_ascii_and_bounded(text: str) -> None:
    with pytest.raises(JsonRefused):
        parse_json(text)


@pytest.mark.parametrize("text", [*UNICODE_DIGITS, *NOT_NUMBERS, "9" * 20])
def test_client_numbers_are_ascii_digits(text: str) -> None:
    assert decimal(text) is None


def test_client_retry_after_ignores_unicode_digits() -> None:
    assert retry_after("\u0663") is None
    assert retry_after("3") == 3.0


# --- token buckets --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_says_how_long_to_wait() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_minute=60, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(1.0)
    clock.now += 0.5
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(1.0)


def test_a_bucket_refills_to_its_burst_only() -> None:
    clock = Clock()
    buckets = TokenBuckets(per_minute=600, burst=2, clock=clock)
    buckets.take("a")
    clock.now += 3600
    assert [buckets.take("a") for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("a") > 0


def test_keys_have_buckets_of_their_own() -> None:
    buckets = TokenBuckets(per_minute=1, burst=1, clock=Clock())
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(60.0)
    assert buckets.take("b") == 0.0


def test_zero_per_minute_is_no_limit() -> None:
    buckets = TokenBuckets(per_minute=0, burst=1, clock=Clock())
    assert all(buckets.take("a") == 0.0 for _ in range(1000))
    assert len(buckets) == 0


def test_buckets_kept_are_bounded() -> None:
    buckets = TokenBuckets(per_minute=1, burst=1, clock=Clock(), max_keys=10)
    for n in range(100):
        buckets.take(f"k{n}")
    assert len(buckets) == 10
    assert buckets.take("k99") > 0  # recently used: still remembered


def test_mint_limit_settings() -> None:
    config = Config.from_env({})
    assert (config.signed_url_mints_per_minute, config.signed_url_mint_burst) == (600, 60)
    config = Config.from_env(
        {"GATEWAY_SIGNED_URL_MINTS_PER_MINUTE": "0", "GATEWAY_SIGNED_URL_MINT_BURST": "5"}
    )
    assert (config.signed_url_mints_per_minute, config.signed_url_mint_burst) == (0, 5)
    with pytest.raises(ConfigError, match="GATEWAY_SIGNED_URL_MINT_BURST"):
        Config.from_env({"GATEWAY_SIGNED_URL_MINT_BURST": "0"})
    with pytest.raises(ConfigError, match="GATEWAY_SIGNED_URL_MINTS_PER_MINUTE"):
        Config.from_env({"GATEWAY_SIGNED_URL_MINTS_PER_MINUTE": "-1"})


# --- the sources: no `$` anchors, no `\d`, no prefix `.match` ---------------------------

_RE_FUNCTIONS = {"compile", "match", "fullmatch", "search", "sub", "subn", "split", "findall"}


def _sources() -> list[Path]:
    folders = ["gateway", "leases", "storage", "client/mobius_artifacts"]
    return [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]


def _regex_literals(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and node.func.attr in _RE_FUNCTIONS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str | bytes)
        ):
            value = node.args[0].value
            found.append(
                (node.lineno, value if isinstance(value, str) else value.decode("latin-1"))
            )
    return found


def _hazards(node: object) -> set[str]:
    """The ``$`` anchors and ``\\d`` classes in a parsed pattern (sre's parse tree)."""
    found: set[str] = set()
    if isinstance(node, sre_parse.SubPattern):
        node = list(node)
    if isinstance(node, list | tuple):
        if len(node) == 2 and node[0] is sre_constants.AT and node[1] is sre_constants.AT_END:
            found.add("$")
        if node == (sre_constants.CATEGORY, sre_constants.CATEGORY_DIGIT):
            found.add("\\d")
        for item in node:
            found |= _hazards(item)
    return found


def test_hazards_are_found() -> None:
    assert _hazards(sre_parse.parse(r"^a(b|c$)")) == {"$"}
    assert _hazards(sre_parse.parse(r"x[\d.]+")) == {"\\d"}
    assert _hazards(sre_parse.parse(r"[$]\$[0-9]\Z")) == set()


def test_no_regex_of_the_sources_uses_dollar_or_unicode_digits() -> None:
    """``$`` also matches before a trailing newline and ``\\d`` any Unicode digit."""
    offences = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for line, pattern in _regex_literals(tree):
            if hazards := _hazards(sre_parse.parse(pattern)):
                offences.append(f"{path.relative_to(ROOT)}:{line}: {sorted(hazards)} {pattern!r}")
    assert offences == []


def test_no_pattern_of_the_sources_is_matched_by_prefix() -> None:
    """``pattern.match(value)`` checks a prefix; ids and numbers are matched whole."""
    offences = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "match"
            ):
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offences == []


def test_the_scan_finds_the_patterns() -> None:
    assert (
        len([p for path in _sources() for p in _regex_literals(ast.parse(path.read_text()))]) > 10
    )


# --- the OpenAPI document names the new answers -----------------------------------------


def test_openapi_declares_content_coding_and_rate_limit_answers() -> None:
    from gateway import openapi

    document = openapi.document()
    with_body = [
        (path, method, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]
    assert len(with_body) >= 5
    for path, method, operation in with_body:
        assert "415" in operation["responses"], (method, path)
    texts = document["components"]["responses"]
    assert "unsupported_content_encoding" in texts["Problem415"]["description"]
    assert "rate_limited" in texts["Problem429"]["description"]
    mint = document["paths"]["/v1/projects/{project}/artifacts/{artifact_id}/signed-url"]["post"]
    assert "429" in mint["responses"]
