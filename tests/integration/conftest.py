"""Fixtures shared by the integration tests: a Postgres connection, S3 settings, key prefixes."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from storage import S3Settings
from tests.conftest import Backends

MiB = 1024 * 1024
PART = 5 * MiB


@pytest.fixture
def settings(backends: Backends) -> S3Settings:
    return S3Settings(
        endpoint_url=backends.s3_endpoint_url,
        bucket=backends.s3_bucket,
        region="us-east-1",
        access_key_id=backends.s3_access_key_id,
        secret_access_key=backends.s3_secret_access_key,
        part_size=PART,
        part_concurrency=2,
        buffer_budget_bytes=4 * PART,
        timeout_seconds=5.0,
    )


@pytest.fixture
def prefix() -> str:
    return f"tests/{secrets.token_hex(6)}/"


@pytest.fixture
async def db(backends: Backends) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own to the test session's Postgres."""
    conn = await asyncpg.connect(backends.database_url)
    yield conn
    await conn.close()
