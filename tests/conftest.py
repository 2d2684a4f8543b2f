"""Session-wide real backends: one Postgres and one SeaweedFS for the whole run.

Set ``GATEWAY_DATABASE_URL`` (and ``GATEWAY_S3_ENDPOINT_URL`` with its
``GATEWAY_S3_ACCESS_KEY_ID`` / ``GATEWAY_S3_SECRET_ACCESS_KEY``) to run the
suite against servers of your own; otherwise both are started from the wheels.
Tests isolate themselves with unique project ids and object keys.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.auth import mint_principal_token
from gateway.cli import ALL_SCOPES
from gateway.config import Config
from gateway.devstack import EmbeddedPostgres, EmbeddedSeaweedFS
from gateway.migrate import migrate


@dataclass(frozen=True)
class Backends:
    database_url: str
    s3_endpoint_url: str
    s3_access_key_id: str
    s3_secret_access_key: str
    s3_bucket: str
    postgres: EmbeddedPostgres | None
    seaweedfs: EmbeddedSeaweedFS | None


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    root = Path(tempfile.mkdtemp(prefix="gateway-tests-"))
    postgres: EmbeddedPostgres | None = None
    seaweedfs: EmbeddedSeaweedFS | None = None
    try:
        database_url = os.environ.get("GATEWAY_DATABASE_URL")
        if not database_url:
            postgres = EmbeddedPostgres(root, database="gateway_test", durable=False).start()
            database_url = postgres.url()
        endpoint = os.environ.get("GATEWAY_S3_ENDPOINT_URL")
        if endpoint:
            access = os.environ["GATEWAY_S3_ACCESS_KEY_ID"]
            secret = os.environ["GATEWAY_S3_SECRET_ACCESS_KEY"]
            bucket = os.environ.get("GATEWAY_S3_BUCKET", "artifacts-test")
        else:
            access, secret, bucket = (
                "test" + secrets.token_hex(4),
                secrets.token_hex(16),
                "artifacts",
            )
            seaweedfs = EmbeddedSeaweedFS(
                root, access_key_id=access, secret_access_key=secret, volume_size_limit_mb=64
            ).start()
            endpoint = seaweedfs.endpoint_url
        asyncio.run(migrate(database_url))
        yield Backends(
            database_url=database_url,
            s3_endpoint_url=endpoint,
            s3_access_key_id=access,
            s3_secret_access_key=secret,
            s3_bucket=bucket,
            postgres=postgres,
            seaweedfs=seaweedfs,
        )
    finally:
        if seaweedfs is not None:
            seaweedfs.stop(timeout=3)
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def project() -> str:
    """A project id no other test uses."""
    return "prj-" + secrets.token_hex(6)


TEST_JWT_SECRET = "test-principal-secret-0123456789abcdef"
TEST_LEASE_KEY = "test-lease-signing-key-0123456789abcdef"
TEST_URL_KEY = "test-url-signing-key-0123456789abcdef"


def gateway_env(backends: Backends) -> dict[str, str]:
    """The GATEWAY_* variables of a gateway on the session's backends, with test keys."""
    return {
        "GATEWAY_DATABASE_URL": backends.database_url,
        "GATEWAY_S3_ENDPOINT_URL": backends.s3_endpoint_url,
        "GATEWAY_S3_ACCESS_KEY_ID": backends.s3_access_key_id,
        "GATEWAY_S3_SECRET_ACCESS_KEY": backends.s3_secret_access_key,
        "GATEWAY_S3_BUCKET": backends.s3_bucket,
        "GATEWAY_AUTH_JWT_SECRET": TEST_JWT_SECRET,
        "GATEWAY_LEASE_SIGNING_KEY": f"lease-1:{TEST_LEASE_KEY}",
        "GATEWAY_URL_SIGNING_KEYS": f"url-1:{TEST_URL_KEY}",
        "GATEWAY_DB_POOL_MIN": "1",
        "GATEWAY_DB_POOL_MAX": "10",
        "GATEWAY_BACKEND_TIMEOUT_SECONDS": "5",
    }


def make_config(backends: Backends, **overrides: object) -> Config:
    """A gateway config on the session's backends, with test keys."""
    return Config.from_env(gateway_env(backends)).with_overrides(**overrides)


def principal_token(
    sub: str = "user:alice",
    scopes: str = "artifacts:read artifacts:write",
    projects: list[str] | None = None,
    ttl: int = 600,
) -> str:
    return mint_principal_token(
        secret=TEST_JWT_SECRET.encode(),
        sub=sub,
        scopes=scopes.split(),
        projects=projects if projects is not None else ["*"],
        issuer="mobius",
        audience="mobius-artifacts",
        ttl_seconds=ttl,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def config(backends: Backends) -> Config:
    return make_config(backends)


@pytest.fixture
async def client(aiohttp_client: Any, config: Config) -> Any:
    """An aiohttp test client on a gateway app wired to the real backends."""
    return await aiohttp_client(create_app(config))


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return bearer(principal_token("svc:scheduler", ALL_SCOPES))
