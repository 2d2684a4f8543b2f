"""S3 requests sent over aiohttp and signed by botocore (:mod:`storage.lean`), against SeaweedFS."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from typing import Any

import pytest

from storage import ObjectNotFound, RangeNotSatisfiable, S3ObjectStore, S3Settings, upload
from storage.lean import LeanS3
from tests.integration.test_storage_s3 import Calls, chunked, read_all


def botocore_requests(store: S3ObjectStore, method: str) -> list[str]:
    """Record the URLs of the ``method`` requests botocore sends from now on."""
    sent: list[str] = []

    def record(request: Any, **_: Any) -> None:
        if request.method == method:
            sent.append(request.url)

    store.client.meta.events.register("before-send.s3", record)
    return sent


async def swap_lean(store: S3ObjectStore, settings: S3Settings) -> None:
    """Give ``store`` a lean client built from ``settings``."""
    assert store.lean is not None
    await store.lean.close()
    store.lean = LeanS3.for_settings(settings)
    assert store.lean is not None
    await store.lean.start()


def test_only_an_explicit_endpoint_with_static_keys_takes_this_path(settings: S3Settings) -> None:
    assert LeanS3.for_settings(settings) is not None
    assert LeanS3.for_settings(replace(settings, endpoint_url=None)) is None
    assert LeanS3.for_settings(replace(settings, access_key_id=None)) is None
    assert LeanS3.for_settings(replace(settings, secret_access_key=None)) is None


def test_the_signature_covers_the_payload_digest(settings: S3Settings) -> None:
    sender = LeanS3.for_settings(settings)
    assert sender is not None
    digest = hashlib.sha256(b"abc").hexdigest()
    headers = sender.signed_headers(
        "PUT", "projects/p/art_1", {"Content-Type": "text/plain"}, sha256_hex=digest
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
        sent = botocore_requests(store, "PUT")
        data = os.urandom(10_000)
        stored = await upload(store, prefix + "small", chunked(data, 3000), max_bytes=10_000)
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert await read_all(store, prefix + "small") == data
        assert sent == []
        assert calls.seen[0] == ("put_object", True)
        # Beyond the staging area an object fills a part buffer and goes through botocore.
        big = os.urandom(1 << 20)
        await upload(store, prefix + "big", chunked(big, 1 << 20), max_bytes=len(big))
        assert len(sent) == 1


async def test_refused_request_is_sent_again_through_botocore(
    settings: S3Settings, prefix: str
) -> None:
    async with S3ObjectStore.connect(settings) as store:
        # Signed with a secret S3 does not know: every answer is 403.
        await swap_lean(store, replace(settings, secret_access_key="w" * 40))
        puts, gets = botocore_requests(store, "PUT"), botocore_requests(store, "GET")
        data = b"still stored"
        await upload(store, prefix + "k", chunked(data), max_bytes=100)
        assert len(puts) == 1
        assert await read_all(store, prefix + "k") == data
        assert len(gets) == 1


async def test_unreachable_endpoint_falls_back_to_botocore(
    settings: S3Settings, prefix: str
) -> None:
    async with S3ObjectStore.connect(settings) as store:
        # Nothing listens on port 9 of the loopback: the connection is refused.
        await swap_lean(store, replace(settings, endpoint_url="http://127.0.0.1:9"))
        puts, gets = botocore_requests(store, "PUT"), botocore_requests(store, "GET")
        await upload(store, prefix + "k", chunked(b"x"), max_bytes=10)
        assert len(puts) == 1
        assert await read_all(store, prefix + "k") == b"x"
        assert len(gets) == 1


async def test_reads_are_sent_without_botocore(settings: S3Settings, prefix: str) -> None:
    calls = Calls()
    async with S3ObjectStore.connect(settings, observer=calls) as store:
        data = os.urandom(300_000)
        await upload(store, prefix + "obj", chunked(data), max_bytes=len(data))
        gets = botocore_requests(store, "GET")
        assert await read_all(store, prefix + "obj") == data
        async with await store.open_range(prefix + "obj", 1000, 1999) as reader:
            assert (reader.content_length, reader.total_size) == (1000, len(data))
            assert reader.content_range == f"bytes 1000-1999/{len(data)}"
            body = b"".join([chunk async for chunk in reader.iter_chunks(300)])
        assert body == data[1000:2000]
        async with await store.open_range(prefix + "obj", suffix_length=10) as reader:
            assert b"".join([c async for c in reader.iter_chunks()]) == data[-10:]
        assert gets == []
        assert calls.count("get_object") == 3


async def test_missing_keys_and_bad_ranges_are_answered_by_botocore(
    settings: S3Settings, prefix: str
) -> None:
    async with S3ObjectStore.connect(settings) as store:
        await upload(store, prefix + "obj", chunked(b"0123456789"), max_bytes=10)
        gets = botocore_requests(store, "GET")
        with pytest.raises(ObjectNotFound):
            await store.open_range(prefix + "missing")
        with pytest.raises(RangeNotSatisfiable) as caught:
            await store.open_range(prefix + "obj", 50)
        assert caught.value.size == 10
        assert len(gets) == 2
