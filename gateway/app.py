"""The composition root: ``create_app(config)`` wires every part of the gateway.

Resources (the asyncpg pool, the S3 object store, the LISTEN connection, the
periodic gc) each live in one ``cleanup_ctx`` context manager; app state is
reached only through the typed ``web.AppKey`` constants of
:mod:`gateway.api.state`. Backends are built by :mod:`gateway.backends`.

This is the one module outside :mod:`gateway.api` that speaks ``aiohttp.web``
(the import contracts in ``pyproject.toml`` name it as the exemption).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from gateway import backends, gc, metrics
from gateway.api import setup_routes
from gateway.api.middleware import (
    echo_request_id,
    error_middleware,
    request_context_middleware,
)
from gateway.api.state import (
    CLAIM_CACHE,
    CONFIG,
    DB,
    DRAIN,
    EVENT_HUB,
    EVENTS_HEARTBEAT_SECONDS,
    LEASE_TOKENS,
    PRINCIPALS,
    SIGNED_URL_MINTS,
    STORE,
    Drain,
)
from gateway.auth import PrincipalVerifier
from gateway.config import Config
from gateway.events import HEARTBEAT_SECONDS, EventHub, StreamLimits
from gateway.ratelimit import TokenBuckets
from leases import ClaimCache, LeaseKey, LeaseTokens

# Multipart bodies are streamed; this only bounds non-streamed bodies (JSON requests).
MAX_JSON_BODY = 64 * 1024
POOL_GAUGE_SECONDS = 2.0


async def _database(app: web.Application) -> AsyncIterator[None]:
    pool = await backends.create_pool(app[CONFIG])
    app[DB] = pool
    gauges = asyncio.create_task(_pool_gauges(pool))
    try:
        yield
    finally:
        gauges.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gauges
        await pool.close()


async def _pool_gauges(pool: asyncpg.Pool) -> None:
    while True:
        metrics.update_pool(pool)
        await asyncio.sleep(POOL_GAUGE_SECONDS)


async def _object_store(app: web.Application) -> AsyncIterator[None]:
    async with backends.object_store(app[CONFIG]) as store:
        app[STORE] = store
        yield


async def _listener(app: web.Application) -> AsyncIterator[None]:
    """The process's one LISTEN connection: it feeds live event streams and evicts
    released claims from the claim cache; closed (with its streams) at shutdown.

    Streams read the table through a small pool of their own (connections opened
    on demand), so no number of them can take the publish path's connections;
    one of its connections is kept from replays for the projects' feeds."""
    config = app[CONFIG]
    streams_pool = await backends.create_pool(
        config, min_size=0, max_size=config.events_db_pool_max
    )
    hub = EventHub(
        lambda: backends.connect(config),
        pool=streams_pool,
        heartbeat_seconds=app.get(EVENTS_HEARTBEAT_SECONDS, HEARTBEAT_SECONDS),
        connect_timeout=config.backend_timeout_seconds,
        claims=app[CLAIM_CACHE],
        limits=StreamLimits(
            per_principal=config.event_streams_per_principal,
            per_project=config.event_streams_per_project,
            queue_events=config.event_stream_queue_events,
        ),
        replay_concurrency=config.events_db_pool_max - 1,
    )
    app[EVENT_HUB] = hub
    try:
        await hub.start()
        yield
    finally:
        await hub.close()
        try:
            await asyncio.wait_for(streams_pool.close(), config.backend_timeout_seconds)
        except TimeoutError:
            streams_pool.terminate()


async def _close_streams(app: web.Application) -> None:
    """``on_shutdown``: end live streams before the server waits for its handlers."""
    hub = app.get(EVENT_HUB)
    if hub is not None:
        await hub.close()


async def _periodic_gc(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    task = None
    if config.gc_interval_seconds > 0:
        task = asyncio.create_task(
            gc.periodic(
                app[DB],
                app[STORE],
                config.gc_interval_seconds,
                config.gc_grace_seconds,
                gc.Retention.from_config(config),
            )
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
        # No request content coding is decoded: such bodies are refused (415,
        # gateway.api.middleware.refuse_content_coding), never inflated.
        handler_args={"auto_decompress": False},
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
    app[SIGNED_URL_MINTS] = TokenBuckets(
        per_minute=config.signed_url_mints_per_minute, burst=config.signed_url_mint_burst
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
    app.cleanup_ctx.append(_listener)
    app.cleanup_ctx.append(_periodic_gc)
    app.on_shutdown.append(_close_streams)
    setup_routes(app, with_metrics=config.metrics_port is None)
    return app
