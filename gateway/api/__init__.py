"""The HTTP layer: everything that speaks ``aiohttp.web``.

:data:`ROUTES` below is the map of the API: every route, its method and its
handler, in one table; :data:`UI_ROUTES`, the artifact browser's pages, follow
it. Handlers live one module per part of the API (docs/api.md); they call the
framework-free use-cases of :mod:`gateway`.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.api import (
    artifacts,
    claims,
    content,
    events,
    health,
    ops,
    problem_pages,
    publish,
    ui,
)
from gateway.api.middleware import defer_continue

_PROJECT = "/v1/projects/{project}"
_ARTIFACT = _PROJECT + "/artifacts/{artifact_id}"

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/healthz", health.healthz),
    ("GET", "/readyz", health.readyz),
    ("GET", "/v1/openapi.json", ops.get_openapi),
    ("GET", "/problems", problem_pages.problem_catalogue),
    ("GET", "/problems/{slug}", problem_pages.problem_entry),
    ("POST", _PROJECT + "/claims", claims.create_claim),
    ("POST", _PROJECT + "/claims/{lease_id}/renew", claims.renew_claim),
    ("DELETE", _PROJECT + "/claims/{lease_id}", claims.release_claim),
    ("POST", _PROJECT + "/artifacts", publish.handle_publish),
    ("GET", _PROJECT + "/artifacts", artifacts.list_artifacts),
    ("GET", _PROJECT + "/artifacts/quota", artifacts.get_quota),
    ("PUT", _PROJECT + "/quota", artifacts.put_quota),
    ("GET", _ARTIFACT, artifacts.get_artifact),
    ("DELETE", _ARTIFACT, artifacts.delete_artifact),
    ("POST", _ARTIFACT + "/signed-url", artifacts.mint_signed_url),
    ("DELETE", _ARTIFACT + "/signed-urls", artifacts.revoke_signed_urls),
    ("GET", _ARTIFACT + "/content", content.get_content),
    ("HEAD", _ARTIFACT + "/content", content.get_content),
    ("GET", _PROJECT + "/events", events.get_events),
]
UI_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/ui", ui.ui_root),
    ("GET", "/ui/{path:.*}", ui.ui_page),
]
"""The artifact browser (:mod:`gateway.api.ui`): an HTML application on the API, not
part of the API's OpenAPI document."""
METRICS_ROUTE = ("GET", "/metrics", ops.get_metrics)
"""Served by the main app unless ``GATEWAY_METRICS_PORT`` gives it a port of its own."""


def setup_routes(app: web.Application, *, with_metrics: bool) -> None:
    """Add :data:`ROUTES`, :data:`UI_ROUTES` (and ``/metrics`` when ``with_metrics``) to ``app``.

    Every route defers ``Expect`` to its handler (see
    :func:`gateway.api.middleware.defer_continue`).
    """
    routes = [*ROUTES, *UI_ROUTES, *([METRICS_ROUTE] if with_metrics else [])]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler, expect_handler=defer_continue)
