import json
import subprocess
import sys

import pytest

from gateway.backends import s3_settings
from gateway.config import Config, ConfigError


def test_defaults_match_the_design() -> None:
    config = Config.from_env({})
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.s3_bucket == "artifacts"
    assert config.auth_jwt_issuer == "mobius"
    assert config.auth_jwt_audience == "mobius-artifacts"
    assert config.lease_max_ttl_seconds == 86400
    assert config.default_quota_bytes == 10737418240
    assert config.max_artifact_bytes == 5368709120
    assert (config.log_level, config.log_format) == ("info", "json")
    assert config.metrics_port is None
    assert config.audit_retention_seconds == 90 * 86400
    assert config.claim_retention_seconds == 30 * 86400
    assert config.idempotency_ttl_seconds == 86400
    assert config.events_retention_seconds == 30 * 86400


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GATEWAY_PORT", "eighty", "must be an integer"),
        ("GATEWAY_PORT", "70000", "between 0 and 65535"),
        ("GATEWAY_DEFAULT_QUOTA_BYTES", "-1", "at least 0"),
        ("GATEWAY_DEFAULT_QUOTA_ARTIFACTS", "-1", "between 0 and"),
        ("GATEWAY_MAX_ARTIFACT_BYTES", "0", "at least 1"),
        ("GATEWAY_LOG_LEVEL", "loud", "must be one of"),
        ("GATEWAY_LOG_FORMAT", "xml", "must be one of"),
        ("GATEWAY_S3_ENDPOINT_URL", "ftp://x", "http:// or https://"),
        ("GATEWAY_AUTH_JWT_SECRET", "short", "at least 32"),
        ("GATEWAY_URL_SIGNING_KEYS", "a:0123456789abcdef0123456789abcdef,b", "kid:secret"),
        (
            "GATEWAY_URL_SIGNING_KEYS",
            "a:0123456789abcdef0123456789abcdef,a:0123456789abcdef0123456789abcdef",
            "twice",
        ),
        ("GATEWAY_AUTH_JWT_PUBLIC_KEYS", "/nonexistent/jwks.json", "cannot read"),
        ("GATEWAY_BODY_MIN_RATE_BYTES_PER_SECOND", "-1", "at least 0"),
        ("GATEWAY_BODY_MIN_RATE_WINDOW_SECONDS", "0", "at least 0.1"),
        ("GATEWAY_S3_BUFFER_WAIT_SECONDS", "0", "at least 0.1"),
        ("GATEWAY_S3_BUFFER_SHARE", "1.5", "at most 1.0"),
        ("GATEWAY_S3_BUFFER_SHARE", "0", "at least 0.01"),
        ("GATEWAY_S3_BUFFER_FILL_SECONDS", "0", "at least 0.1"),
        ("GATEWAY_S3_BUFFER_FILL_SECONDS", "10", "below GATEWAY_S3_BUFFER_WAIT_SECONDS"),
        ("GATEWAY_S3_STAGING_BUDGET_BYTES", "-1", "at least 0"),
        ("GATEWAY_AUDIT_RETENTION_SECONDS", "-1", "between 0 and"),
        ("GATEWAY_CLAIM_RETENTION_SECONDS", "-1", "between 0 and"),
        ("GATEWAY_IDEMPOTENCY_TTL_SECONDS", "-1", "between 0 and"),
        ("GATEWAY_EVENTS_RETENTION_SECONDS", "-1", "between 0 and"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({variable: value})
    assert info.value.variable == variable
    assert message in str(info.value)
    assert str(info.value).startswith(variable + ":")


def test_slow_upload_limits_default_and_parse() -> None:
    config = Config.from_env({})
    assert config.body_min_rate_bytes_per_second == 1024
    assert config.body_min_rate_window_seconds == 30.0
    assert config.s3_buffer_wait_seconds == 10.0
    assert config.s3_buffer_share == 0.5
    assert config.s3_buffer_fill_seconds == 2.0
    assert config.s3_staging_budget_bytes == 32 * 1024 * 1024
    config = Config.from_env(
        {
            "GATEWAY_BODY_MIN_RATE_BYTES_PER_SECOND": "0",
            "GATEWAY_BODY_MIN_RATE_WINDOW_SECONDS": "5",
            "GATEWAY_S3_BUFFER_WAIT_SECONDS": "2.5",
            "GATEWAY_S3_BUFFER_SHARE": "1",
        }
    )
    assert config.body_min_rate_bytes_per_second == 0
    assert config.body_min_rate_window_seconds == 5.0
    assert config.s3_buffer_wait_seconds == 2.5
    assert config.s3_buffer_share == 1.0
    # Unset, the fill time stays below a short buffer wait.
    assert Config.from_env({"GATEWAY_S3_BUFFER_WAIT_SECONDS": "1"}).s3_buffer_fill_seconds == 0.5


def test_slow_upload_memory_settings_reach_the_store() -> None:
    config = Config.from_env(
        {
            "GATEWAY_S3_BUFFER_FILL_SECONDS": "3.5",
            "GATEWAY_S3_STAGING_BUDGET_BYTES": "0",
        }
    )
    settings = s3_settings(config)
    assert settings.buffer_fill_seconds == 3.5 and settings.staging_budget_bytes == 0


def test_signing_keys_first_signs(tmp_path) -> None:
    config = Config.from_env(
        {
            "GATEWAY_URL_SIGNING_KEYS": (
                "new:0123456789abcdef0123456789abcdefX, old:0123456789abcdef0123456789abcdefY"
            )
        }
    )
    assert [k.kid for k in config.url_signing_keys] == ["new", "old"]
    single = Config.from_env(
        {"GATEWAY_LEASE_SIGNING_KEY": "0123456789abcdef0123456789abcdef-secret"}
    )
    assert single.lease_signing_keys[0].kid == "lease-1"
    assert "secret" not in repr(single)


def test_jwks_file_is_loaded_and_checked(tmp_path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "abc"}]}))
    with pytest.raises(ConfigError, match="needs a 'kid'"):
        Config.from_env({"GATEWAY_AUTH_JWT_PUBLIC_KEYS": str(path)})
    path.write_text("not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_env({"GATEWAY_AUTH_JWT_PUBLIC_KEYS": str(path)})


def test_cli_stops_with_one_line_naming_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "dev"],
        env={"GATEWAY_PORT": "not-a-port", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "artifact-gateway: GATEWAY_PORT: must be an integer (got 'not-a-port')"
    ]


def test_a_refused_url_is_shown_without_its_credentials() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve"],
        env={"GATEWAY_S3_ENDPOINT_URL": "ftp://key:s3cret@s3/?t=s3cret", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert (
        "  GATEWAY_S3_ENDPOINT_URL: must be an http:// or https:// URL "
        "(got 'ftp://[redacted]@s3/?[redacted]')"
    ) in lines
    assert "s3cret" not in result.stderr


def test_serve_requires_configured_backends() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "GATEWAY_DATABASE_URL: is required" in result.stderr


def test_event_stream_limits_default_and_parse() -> None:
    config = Config.from_env({})
    assert config.event_streams_per_principal == 16
    assert config.event_streams_per_project == 64
    assert config.event_stream_queue_events == 256
    assert config.events_db_pool_max == 2
    config = Config.from_env(
        {
            "GATEWAY_EVENT_STREAMS_PER_PRINCIPAL": "4",
            "GATEWAY_EVENT_STREAMS_PER_PROJECT": "1_000",
            "GATEWAY_EVENT_STREAM_QUEUE_EVENTS": "32",
            "GATEWAY_EVENTS_DB_POOL_MAX": "3",
        }
    )
    assert (config.event_streams_per_principal, config.event_streams_per_project) == (4, 1000)
    assert (config.event_stream_queue_events, config.events_db_pool_max) == (32, 3)
    for variable in (
        "GATEWAY_EVENT_STREAMS_PER_PRINCIPAL",
        "GATEWAY_EVENT_STREAMS_PER_PROJECT",
        "GATEWAY_EVENT_STREAM_QUEUE_EVENTS",
        "GATEWAY_EVENTS_DB_POOL_MAX",
    ):
        with pytest.raises(ConfigError, match=variable):
            Config.from_env({variable: "0"})


def test_one_error_names_every_bad_and_every_missing_variable() -> None:
    env = {"GATEWAY_PORT": "eighty", "GATEWAY_S3_ENDPOINT_URL": "ftp://x"}
    with pytest.raises(ConfigError) as info:
        Config.from_env(env, required=(Config.missing_backends, Config.missing_keys))
    assert [name for name, _ in info.value.problems] == [
        "GATEWAY_PORT",
        "GATEWAY_S3_ENDPOINT_URL",  # bad, so not reported missing a second time
        "GATEWAY_DATABASE_URL",
        "GATEWAY_AUTH_JWT_SECRET",
        "GATEWAY_LEASE_SIGNING_KEY",
        "GATEWAY_URL_SIGNING_KEYS",
    ]
    lines = str(info.value).splitlines()
    assert lines[0] == "6 settings need fixing:"
    assert lines[1] == "  GATEWAY_PORT: must be an integer (got 'eighty')"
    assert "  GATEWAY_DATABASE_URL: is required" in lines


def test_every_reader_reports_instead_of_stopping_at_the_first() -> None:
    env = {
        "GATEWAY_DB_POOL_MAX": "0",
        "GATEWAY_S3_BUFFER_SHARE": "2",
        "GATEWAY_LOG_LEVEL": "loud",
        "GATEWAY_SERVE_PDF_INLINE": "maybe",
        "GATEWAY_AUTH_JWT_SECRET": "short",
        "GATEWAY_LEASE_SIGNING_KEY": "k:short",
        "GATEWAY_AUTH_JWT_PUBLIC_KEYS": "/nonexistent/jwks.json",
        "GATEWAY_METRICS_PORT": "0",
    }
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    assert {name for name, _ in info.value.problems} == set(env)


def test_s3_keys_come_in_pairs() -> None:
    config = Config.from_env({"GATEWAY_S3_ACCESS_KEY_ID": "id"})
    assert config.missing_backends()[-1] == (
        "GATEWAY_S3_SECRET_ACCESS_KEY",
        "is required with GATEWAY_S3_ACCESS_KEY_ID",
    )


def test_serve_names_every_missing_variable_in_one_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "artifact-gateway: 5 settings need fixing:",
        "  GATEWAY_DATABASE_URL: is required",
        "  GATEWAY_S3_ENDPOINT_URL: is required",
        "  GATEWAY_AUTH_JWT_SECRET: is required (or GATEWAY_AUTH_JWT_PUBLIC_KEYS) to verify "
        "principal tokens",
        "  GATEWAY_LEASE_SIGNING_KEY: is required",
        "  GATEWAY_URL_SIGNING_KEYS: is required",
    ]


def test_log_format_and_no_color_record_what_was_asked() -> None:
    assert not Config.from_env({}).log_format_set
    assert Config.from_env({"GATEWAY_LOG_FORMAT": "json"}).log_format_set
    assert not Config.from_env({}).no_color
    assert Config.from_env({"NO_COLOR": "1"}).no_color
    assert not Config.from_env({"NO_COLOR": ""}).no_color  # https://no-color.org: non-empty
