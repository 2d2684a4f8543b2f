"""Translation of driver errors into storage errors, range headers and settings."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from storage import (
    EntityTooLarge,
    ObjectNotFound,
    RangeNotSatisfiable,
    S3Settings,
    StorageError,
    StorageUnavailable,
    client_config,
    format_range,
    translate_error,
)
from storage.s3 import retry_unreachable_quickly, translated_errors


def client_error(
    code: str, status: int, *, headers: dict[str, str] | None = None, **fields: Any
) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"message of {code}", **fields},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("start", "end", "suffix", "expected"),
    [
        (None, None, None, None),
        (0, 99, None, "bytes=0-99"),
        (5, 5, None, "bytes=5-5"),
        (100, None, None, "bytes=100-"),
        (None, None, 10, "bytes=-10"),
        (None, None, 0, "bytes=-0"),
    ],
)
def test_format_range(
    start: int | None, end: int | None, suffix: int | None, expected: str
) -> None:
    assert format_range(start, end, suffix_length=suffix) == expected


@pytest.mark.parametrize(
    ("start", "end", "suffix"),
    [(None, 5, None), (-1, None, None), (5, 4, None), (0, None, 3), (None, 3, 3), (None, None, -1)],
)
def test_format_range_rejects_inexpressible_ranges(
    start: int | None, end: int | None, suffix: int | None
) -> None:
    with pytest.raises(ValueError):
        format_range(start, end, suffix_length=suffix)


@pytest.mark.parametrize("code", ["NoSuchKey", "404", "NotFound"])
def test_missing_key_becomes_object_not_found(code: str) -> None:
    error = translate_error("get_object", client_error(code, 404), key="a/b")
    assert isinstance(error, ObjectNotFound)
    assert error.key == "a/b" and error.operation == "get_object"


def test_missing_bucket_is_not_a_missing_object() -> None:
    error = translate_error("get_object", client_error("NoSuchBucket", 404), key="a/b")
    assert type(error) is StorageError
    assert error.code == "NoSuchBucket"


def test_invalid_range_carries_the_size_from_content_range() -> None:
    exc = client_error("InvalidRange", 416, headers={"content-range": "bytes */11"})
    error = translate_error("get_object", exc, key="k")
    assert isinstance(error, RangeNotSatisfiable)
    assert error.size == 11


def test_invalid_range_carries_the_size_from_the_error_body() -> None:
    exc = client_error("InvalidRange", 416, ActualObjectSize="1234")
    error = translate_error("get_object", exc, key="k")
    assert isinstance(error, RangeNotSatisfiable) and error.size == 1234


def test_invalid_range_without_a_size() -> None:
    error = translate_error("get_object", client_error("InvalidRange", 416), key="k")
    assert isinstance(error, RangeNotSatisfiable) and error.size is None


@pytest.mark.parametrize(
    ("code", "status"),
    [("SlowDown", 503), ("ServiceUnavailable", 503), ("InternalError", 500), ("Weird", 502)],
)
def test_transient_answers_become_unavailable(code: str, status: int) -> None:
    error = translate_error("upload_part", client_error(code, status))
    assert isinstance(error, StorageUnavailable)
    assert error.operation == "upload_part" and error.code == code
    assert code in error.detail


def test_other_client_errors_keep_operation_and_code() -> None:
    error = translate_error("put_object", client_error("AccessDenied", 403))
    assert type(error) is StorageError
    assert error.operation == "put_object" and error.code == "AccessDenied"
    assert "AccessDenied" in str(error)


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        IncompleteReadError(actual_bytes=1, expected_bytes=2),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("truncated"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
    ],
)
def test_connection_failures_become_unavailable(exc: BaseException) -> None:
    error = translate_error("head_bucket", exc)
    assert isinstance(error, StorageUnavailable)
    assert error.operation == "head_bucket" and error.detail


@pytest.mark.parametrize(
    "exc", [NoCredentialsError(), ParamValidationError(report="Body: invalid type")]
)
def test_other_driver_errors_become_storage_errors(exc: BaseException) -> None:
    error = translate_error("put_object", exc)
    assert type(error) is StorageError
    assert error.code == type(exc).__name__


def test_translated_errors_chains_the_driver_error() -> None:
    original = client_error("SlowDown", 503)
    with pytest.raises(StorageUnavailable) as caught, translated_errors("put_object"):
        raise original
    assert caught.value.__cause__ is original


def test_translated_errors_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), translated_errors("put_object"):
        raise KeyError("bug")
    with pytest.raises(EntityTooLarge), translated_errors("put_object"):
        raise EntityTooLarge(10)


def test_entity_too_large_carries_the_limit() -> None:
    error = EntityTooLarge(1024)
    assert isinstance(error, StorageError) and error.limit == 1024


def _settings(**overrides: Any) -> S3Settings:
    values: dict[str, Any] = {
        "endpoint_url": "http://127.0.0.1:9",
        "bucket": "artifacts",
        "region": "us-east-1",
        "access_key_id": "key",
        "secret_access_key": "very-secret",
    }
    return S3Settings(**(values | overrides))


def test_settings_hide_the_secret() -> None:
    settings = _settings()
    assert "very-secret" not in repr(settings)
    assert settings.buffer_count == 16
    assert settings.buffer_owner_limit == 8
    assert _settings(buffer_owner_share=0.01).buffer_owner_limit == 1
    assert settings.read_timeout == 60


@pytest.mark.parametrize(
    "overrides",
    [
        {"bucket": ""},
        {"part_size": 1024},
        {"part_concurrency": 0},
        {"buffer_budget_bytes": 1024},
        {"timeout_seconds": 0},
        {"max_pool_connections": 0},
        {"buffer_wait_seconds": 0},
        {"buffer_owner_share": 0},
        {"buffer_owner_share": 1.5},
    ],
)
def test_settings_reject_unusable_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _settings(**overrides)


def test_client_config_does_not_hash_payloads() -> None:
    config = client_config(_settings(timeout_seconds=2.0))
    assert config.s3 == {"addressing_style": "path", "payload_signing_enabled": False}
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.signature_version == "s3v4"
    assert config.connect_timeout == 2.0
    assert config.read_timeout == 60
    assert config.retries == {"max_attempts": 3, "mode": "standard"}
    assert config.max_pool_connections == 64


def test_refused_connections_are_retried_quickly_then_given_up() -> None:
    refused = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    delays = [retry_unreachable_quickly(attempts=n, caught_exception=refused) for n in (1, 2, 3)]
    assert delays == [0.05, 0.1, 0.2]
    assert retry_unreachable_quickly(attempts=4, caught_exception=refused) is False


def test_connect_timeouts_are_not_retried() -> None:
    timeout = ConnectTimeoutError(endpoint_url="http://10.255.255.1")
    assert retry_unreachable_quickly(attempts=1, caught_exception=timeout) is False


def test_other_failures_are_left_to_botocore() -> None:
    assert retry_unreachable_quickly(attempts=1, caught_exception=None) is None
    read_timeout = ReadTimeoutError(endpoint_url="http://127.0.0.1:1")
    assert retry_unreachable_quickly(attempts=1, caught_exception=read_timeout) is None
