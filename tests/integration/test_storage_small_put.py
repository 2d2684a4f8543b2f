"""PutObject of small objects over aiohttp (:mod:`storage.small_put`), against SeaweedFS."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import replace
from typing import Any

import pytest

from storage import S3ObjectStore, S3Settings
from storage.small_put import SmallPut
from tests.conftest import Backends
from tests.integration.test_storage_s3 import Calls, chunked, read_all


@pytest.fixture
def settings(backends: Backends) -> S3Settings:
    return S3Settings(
        endpoint_url=backends.s3_endpoint_url,
        bucket=backends.s3_bucket,
        region="us-east-1",
        access_key_id=backends.s3_access_key_id,
        secret_access_key=backends.s3_secret_access_key,
        timeout_seconds=5.0,
    )


@pytest.fixture
def prefix() -> str:
    return f"tests/{secrets.token_hex(6)}/"


def botocore_puts(store: S3ObjectStore) -> list[str]:
    """Record the PUTs botocore sends from now on (their URLs)."""
    sent: list[str] = []

    def record(request: Any, **_: Any) -> None:
        if request.method == "PUT":
            sent.append(request.url)

    store.client.meta.events.register("before-send.s3", record)
    return sent


def test_only_an_explicit_endpoint_with_static_keys_takes_this_path(settings: S3Settings) -> None:
    assert SmallPut.for_settings(settings) is not None
    assert SmallPut.for_settings(replace(settings, endpoint_url=None)) is None
    assert SmallPut.for_settings(replace(settings, access_key_id=None)) is None
    assert SmallPut.for_settings(replace(settings, secret_access_key=None)) is None


def test_the_signature_covers_the_payload_digest(settings: S3Settings) -> None:
    sender = SmallPut.for_settings(settings)
    assert sender is not None
    digest = hashlib.sha256(b"abc").hexdigest()
    headers = sender.signed_headers(
        "projects/p/art_1", content_type="text/plain", sha256_hex=digest
    )
    assert headers["X-Amz-Content-SHA256"] == digest
    assert headers["Content-Type"] == "text/plain"
    authorization = headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={settings.access_key_id}/")
    assert "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date," in authorization
    assert sender.url_of("projects/p/a b~c") == (
        f"{settings.endpoint_url}/{settings.bucket}/projects/p/a%20b~c"
    )


async def test_small_stream_is_sent_without_botocore(settings: S3Settings, prefix: str) -> None:
    calls = Calls()
    async with S3ObjectStore.connect(settings, observer=calls) as store:
        sent = botocore_puts(store)
        data = os.urandom(10_000)
        stored = await store.put_stream(prefix + "small", chunked(data, 3000), max_bytes=10_000)
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert await read_all(store, prefix + "small") == data
        assert sent == []
        assert calls.seen[0] == ("put_object", True)
        # Beyond the staging area an object fills a part buffer and goes through botocore.
        big = os.urandom(1 << 20)
        await store.put_stream(prefix + "big", chunked(big, 1 << 20), max_bytes=len(big))
        assert len(sent) == 1


async def test_refused_request_is_sent_again_through_botocore(
    settings: S3Settings, prefix: str
) -> None:
    async with S3ObjectStore.connect(settings) as store:
        # This sender signs with a secret S3 does not know: every answer is 403.
        assert store.small_put is not None
        await store.small_put.close()
        store.small_put = SmallPut.for_settings(replace(settings, secret_access_key="w" * 40))
        assert store.small_put is not None
        await store.small_put.start()
        sent = botocore_puts(store)
        data = b"still stored"
        await store.put_stream(prefix + "k", chunked(data), max_bytes=100)
        assert len(sent) == 1
        assert await read_all(store, prefix + "k") == data


async def test_unreachable_sender_falls_back_to_botocore(settings: S3Settings, prefix: str) -> None:
    async with S3ObjectStore.connect(settings) as store:
        assert store.small_put is not None
        await store.small_put.close()
        # Nothing listens on port 9 of the loopback: the connection is refused.
        store.small_put = SmallPut.for_settings(
            replace(settings, endpoint_url="http://127.0.0.1:9")
        )
        assert store.small_put is not None
        await store.small_put.start()
        sent = botocore_puts(store)
        await store.put_stream(prefix + "k", chunked(b"x"), max_bytes=10)
        assert len(sent) == 1
        assert await read_all(store, prefix + "k") == b"x"
