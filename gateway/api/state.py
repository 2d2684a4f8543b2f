"""Typed keys of the application state, set by :func:`gateway.app.create_app`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from gateway.auth import Principal, PrincipalVerifier
from gateway.config import Config
from gateway.events import EventHub
from gateway.ratelimit import TokenBuckets
from leases import ClaimCache, LeaseTokens
from storage import ObjectStore

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", asyncpg.Pool)
STORE = web.AppKey("store", ObjectStore)
LEASE_TOKENS = web.AppKey("lease_tokens", LeaseTokens)
CLAIM_CACHE = web.AppKey("claim_cache", ClaimCache)
PRINCIPALS = web.AppKey("principals", PrincipalVerifier)
SIGNED_URL_MINTS = web.AppKey("signed_url_mints", TokenBuckets)


@dataclass
class RequestContext:
    """Per-request facts set by handlers, read by the access log and error rendering."""

    request_id: str
    project: str | None = None
    artifact_id: str | None = None
    lease_id: str | None = None
    principal: Principal | None = None
    bytes_in: int | None = None
    counted: bool = False  # holds a place in the Drain count
    continued: bool = False  # "100 Continue" was sent

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "project": self.project,
            "artifact_id": self.artifact_id,
            "lease_id": self.lease_id,
            "principal": self.principal.sub if self.principal else None,
        }
        return {key: value for key, value in fields.items() if value is not None}


REQUEST_CONTEXT = web.RequestKey("context", RequestContext)


class Drain:
    """Requests in flight, and whether the process is draining before it stops.

    Long-lived streams (server-sent events) leave the count once they start
    streaming: a drain waits for uploads and downloads, not for subscriptions.
    """

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True when every request in flight finished within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


DRAIN = web.AppKey("drain", Drain)


def client_gone(request: web.Request) -> bool:
    """True once the client has closed its connection (or it was closed under it)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def context(request: web.Request) -> RequestContext:
    """The request's context; a request the middleware did not see gets a blank one."""
    ctx = request.get(REQUEST_CONTEXT)
    if ctx is None:
        ctx = RequestContext(request_id="")
        request[REQUEST_CONTEXT] = ctx
    return ctx


EVENT_HUB = web.AppKey("event_hub", EventHub)
"""The process's events hub (one LISTEN connection, live-stream subscribers)."""
EVENTS_HEARTBEAT_SECONDS = web.AppKey("events_heartbeat_seconds", float)
"""Optional: seconds between keep-alive comments on idle event streams (default 15)."""
