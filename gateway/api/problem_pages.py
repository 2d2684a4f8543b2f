"""The documentation of the problem types: ``GET /problems`` and ``GET /problems/{slug}``.

A problem's ``type`` (``https://mobius.dev/problems/<slug>``) is served by every
gateway at ``/problems/<slug>``; the pages come from :mod:`gateway.problem_docs`.
They carry the artifact browser's headers (:data:`gateway.api.ui.HEADERS`): a
policy under which nothing runs, ``nosniff``, ``no-referrer``.
"""

from __future__ import annotations

from aiohttp import web

from gateway import problem_docs
from gateway.api.ui import HEADERS, NO_CACHE
from gateway.errors import NotFound


def _html(text: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/html",
        charset="utf-8",
        headers={**HEADERS, "Cache-Control": NO_CACHE},
    )


async def problem_catalogue(request: web.Request) -> web.Response:
    """``GET /problems``: every problem type, one anchor per slug."""
    return _html(problem_docs.render_catalogue())


async def problem_entry(request: web.Request) -> web.Response:
    """``GET /problems/{slug}``: one problem type (its anchor in the catalogue is linked)."""
    doc = problem_docs.by_slug().get(request.match_info["slug"])
    if doc is None:
        raise NotFound("no such problem type; GET /problems lists them")
    return _html(problem_docs.render_entry(doc))
