"""Operations routes: Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from gateway import metrics, openapi
from gateway.api.bodies import json_response


async def get_metrics(request: web.Request) -> web.Response:
    body, content_type = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def get_openapi(request: web.Request) -> web.Response:
    return json_response(openapi.document())


def metrics_app() -> web.Application:
    """A bare app serving only /metrics, for GATEWAY_METRICS_PORT."""
    app = web.Application()
    app.router.add_get("/metrics", get_metrics, allow_head=False)
    return app
