"""HTTP routes. Each module holds the handlers of one part of the API (docs/api.md)."""

from __future__ import annotations

from aiohttp import web

from gateway.api import artifacts, claims, content, events, health, ops


def setup_routes(app: web.Application) -> None:
    health.setup(app)
    ops.setup(app)
    claims.setup(app)
    artifacts.setup(app)
    content.setup(app)
    events.setup(app)
