"""Backends built from the configuration, in one place: the Postgres pool and the
S3 object store (with the configured timeouts), for ``create_app`` and for the
``gc`` and ``migrate`` commands alike."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from gateway import metrics
from gateway.config import Config
from storage import S3ObjectStore, S3Settings


def s3_settings(config: Config) -> S3Settings:
    return S3Settings(
        endpoint_url=config.s3_endpoint_url,
        bucket=config.s3_bucket,
        region=config.s3_region,
        access_key_id=config.s3_access_key_id,
        secret_access_key=config.s3_secret_access_key,
        part_size=config.s3_part_size,
        part_concurrency=config.s3_part_concurrency,
        buffer_budget_bytes=config.s3_buffer_budget_bytes,
        buffer_wait_seconds=config.s3_buffer_wait_seconds,
        buffer_owner_share=config.s3_buffer_share,
        buffer_fill_seconds=config.s3_buffer_fill_seconds,
        staging_budget_bytes=config.s3_staging_budget_bytes,
        timeout_seconds=config.backend_timeout_seconds,
    )


def database_url(config: Config) -> str:
    if not config.database_url:
        raise ValueError("GATEWAY_DATABASE_URL is required")
    return config.database_url


async def create_pool(
    config: Config, *, min_size: int | None = None, max_size: int | None = None
) -> asyncpg.Pool:
    """The asyncpg pool, with the configured sizes and timeouts, instrumented."""
    return await asyncpg.create_pool(
        database_url(config),
        init=_instrument_connection,
        reset=_keep_session,
        min_size=config.db_pool_min if min_size is None else min_size,
        max_size=config.db_pool_max if max_size is None else max_size,
        timeout=config.backend_timeout_seconds,
        command_timeout=config.backend_timeout_seconds * 3,
        max_inactive_connection_lifetime=300,
    )


async def connect(config: Config) -> asyncpg.Connection:
    """One connection with the configured timeouts (migrations, the LISTEN connection)."""
    return await asyncpg.connect(
        database_url(config),
        timeout=config.backend_timeout_seconds,
        command_timeout=config.backend_timeout_seconds * 3,
    )


async def _instrument_connection(conn: asyncpg.Connection) -> None:
    conn.add_query_logger(metrics.query_logger)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a pooled connection without asyncpg's default reset round trip.

    asyncpg always rolls back a transaction left open. Its default reset also
    runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` — one more
    round trip on every release, for session state the gateway's pooled
    connections never keep: LISTEN has its own connection, no ``SET`` or cursor
    outlives a transaction, and the one session lock (gc's) is released by gc
    itself or its connection is closed.
    """


@contextlib.asynccontextmanager
async def object_store(config: Config) -> AsyncIterator[S3ObjectStore]:
    """The S3 object store, its operations observed by the metrics."""
    observer = metrics.storage_observer(S3ObjectStore.backend_name)
    async with S3ObjectStore.connect(s3_settings(config), observer=observer) as store:
        yield store
