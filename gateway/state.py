"""Typed keys of the application state, set by :func:`gateway.app.create_app`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web

from gateway.auth import Principal, PrincipalVerifier
from gateway.config import Config
from leases import LeaseTokens
from storage import ObjectStore

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", asyncpg.Pool)
STORE = web.AppKey("store", ObjectStore)
LEASE_TOKENS = web.AppKey("lease_tokens", LeaseTokens)
PRINCIPALS = web.AppKey("principals", PrincipalVerifier)


@dataclass
class RequestContext:
    """Per-request facts set by handlers, read by the access log and error rendering."""

    request_id: str
    project: str | None = None
    artifact_id: str | None = None
    lease_id: str | None = None
    principal: Principal | None = None
    bytes_in: int | None = None

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "project": self.project,
            "artifact_id": self.artifact_id,
            "lease_id": self.lease_id,
            "principal": self.principal.sub if self.principal else None,
        }
        return {key: value for key, value in fields.items() if value is not None}


REQUEST_CONTEXT = web.RequestKey("context", RequestContext)


def context(request: web.Request) -> RequestContext:
    """The request's context; a request the middleware did not see gets a blank one."""
    ctx = request.get(REQUEST_CONTEXT)
    if ctx is None:
        ctx = RequestContext(request_id="")
        request[REQUEST_CONTEXT] = ctx
    return ctx


if TYPE_CHECKING:
    from gateway.events import EventHub

EVENT_HUB: web.AppKey[EventHub] = web.AppKey("event_hub")
"""The process's events hub (one LISTEN connection, live-stream subscribers)."""
EVENTS_HEARTBEAT_SECONDS = web.AppKey("events_heartbeat_seconds", float)
"""Optional: seconds between keep-alive comments on idle event streams (default 15)."""
