"""HTTP routes. Each module holds the handlers of one part of the API (docs/api.md)."""

from __future__ import annotations

from aiohttp import web

from gateway.api import artifacts, claims, content, events, health, ops
from gateway.middleware import defer_continue


def setup_routes(app: web.Application) -> None:
    health.setup(app)
    ops.setup(app)
    claims.setup(app)
    artifacts.setup(app)
    content.setup(app)
    events.setup(app)
    for route in app.router.routes():
        # aiohttp takes an expect handler per route only; every route defers
        # `Expect` to the middleware and handlers (see defer_continue).
        route._expect_handler = defer_continue
