"""The composition root: ``create_app(config)`` wires every part of the gateway.

Resources (the asyncpg pool, the S3 object store, background tasks) each live in
one ``cleanup_ctx`` context manager; app state is reached only through the typed
``web.AppKey`` constants below.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from gateway import api, events, gc, metrics
from gateway.auth import PrincipalVerifier
from gateway.config import Config
from gateway.middleware import echo_request_id, error_middleware, request_context_middleware
from gateway.state import (
    CLAIM_CACHE,
    CONFIG,
    DB,
    DRAIN,
    LEASE_TOKENS,
    PRINCIPALS,
    STORE,
    Drain,
)
from leases import ClaimCache, LeaseKey, LeaseTokens
from storage import S3ObjectStore, S3Settings

# Multipart bodies are streamed; this only bounds non-streamed bodies (JSON requests).
MAX_JSON_BODY = 64 * 1024
POOL_GAUGE_SECONDS = 2.0


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
        timeout_seconds=config.backend_timeout_seconds,
    )


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    assert config.database_url, "GATEWAY_DATABASE_URL is required"
    pool = await asyncpg.create_pool(
        config.database_url,
        init=_instrument_connection,
        reset=_keep_session,
        min_size=config.db_pool_min,
        max_size=config.db_pool_max,
        timeout=config.backend_timeout_seconds,
        command_timeout=config.backend_timeout_seconds * 3,
        max_inactive_connection_lifetime=300,
    )
    app[DB] = pool
    gauges = asyncio.create_task(_pool_gauges(pool))
    try:
        yield
    finally:
        gauges.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gauges
        await pool.close()


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


async def _pool_gauges(pool: asyncpg.Pool) -> None:
    while True:
        metrics.update_pool(pool)
        await asyncio.sleep(POOL_GAUGE_SECONDS)


async def _object_store(app: web.Application) -> AsyncIterator[None]:
    observer = metrics.storage_observer(S3ObjectStore.backend_name)
    async with S3ObjectStore.connect(s3_settings(app[CONFIG]), observer=observer) as store:
        app[STORE] = store
        yield


async def _periodic_gc(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    task = None
    if config.gc_interval_seconds > 0:
        task = asyncio.create_task(
            gc.periodic(app[DB], app[STORE], config.gc_interval_seconds, config.gc_grace_seconds)
        )
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def create_app(config: Config) -> web.Application:
    config.require_keys()
    app = web.Application(
        middlewares=[request_context_middleware, error_middleware],
        client_max_size=MAX_JSON_BODY,
    )
    app[CONFIG] = config
    app[DRAIN] = Drain()
    app.on_response_prepare.append(echo_request_id)
    app[CLAIM_CACHE] = ClaimCache(max_age=config.lease_cache_seconds)
    app[LEASE_TOKENS] = LeaseTokens(
        [LeaseKey(kid=k.kid, secret=k.secret) for k in config.lease_signing_keys],
        max_ttl_seconds=config.lease_max_ttl_seconds,
        leeway_seconds=config.auth_leeway_seconds,
    )
    app[PRINCIPALS] = PrincipalVerifier(
        secret=config.auth_jwt_secret,
        jwks=config.auth_jwt_public_keys,
        issuer=config.auth_jwt_issuer,
        audience=config.auth_jwt_audience,
        leeway_seconds=config.auth_leeway_seconds,
        max_ttl_seconds=config.auth_max_token_ttl_seconds,
    )
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_object_store)
    app.cleanup_ctx.append(events.listener_ctx)
    app.cleanup_ctx.append(_periodic_gc)
    api.setup_routes(app)
    return app
