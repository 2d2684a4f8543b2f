"""The artifact browser: ``/ui/``, a static application shipped in ``gateway/ui``.

Every ``GET /ui/<path>`` answers the application's one page (``index.html``), so
deep links (``/ui/projects/demo/runs/run_42``) survive a reload; only the files
under ``assets/`` and ``vendor/`` are answered as themselves, and a missing one
there is a ``404``. The page speaks to the public API only, with the principal
token the person enters; nothing here reads a credential.

Every answer carries :data:`HEADERS`: a strict Content-Security-Policy (scripts
and styles from this origin only, no inline script or style, no plugin, no base
URL, no form target, framed by nobody, and no frame but the sandboxed
``srcdoc`` of an HTML preview), ``nosniff`` and ``no-referrer``. A vendored
library lives in a folder named with its version (``vendor/marked-18.2.1/``), so
its files never change under a name and are cached for a year; everything else
is revalidated on every load (``no-cache`` with a validator).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.errors import NotFound

UI_ROOT = Path(__file__).resolve().parent.parent / "ui"
INDEX = "index.html"
ASSET_FOLDERS = ("assets/", "vendor/")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
# A folder under vendor/ named <library>-<version>: its files are immutable.
_VERSIONED = re.compile(r"\Avendor/[a-z0-9.-]+-[0-9]+\.[0-9]+\.[0-9]+/")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # thumbnails and SVG previews are blob: URLs of bytes fetched with the token
        "img-src 'self' blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        # an HTML preview is an iframe srcdoc (not subject to frame-src); nothing
        # may load into a frame, and a link clicked inside one goes nowhere
        "frame-src 'none'",
        "worker-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class UiFile:
    path: Path
    content_type: str
    cache_control: str


@functools.cache
def files(root: Path = UI_ROOT) -> dict[str, UiFile]:
    """The files the browser may ask for, by their path under ``/ui/``: those of a
    known type under ``root`` (read once; nothing outside the folder is reachable)."""
    found: dict[str, UiFile] = {}
    for path in sorted(root.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        name = path.relative_to(root).as_posix()
        cache = IMMUTABLE if _VERSIONED.search(name) else NO_CACHE
        found[name] = UiFile(path, content_type, cache)
    return found


async def ui_root(request: web.Request) -> web.StreamResponse:
    """``GET /ui``: the application lives under ``/ui/``."""
    raise web.HTTPPermanentRedirect("/ui/", headers=HEADERS)


async def ui_page(request: web.Request) -> web.StreamResponse:
    """``GET /ui/{path}``: an asset, or the application's page for any other path."""
    path = request.match_info["path"]
    shipped = files()
    found = shipped.get(path) if path.startswith(ASSET_FOLDERS) else shipped.get(INDEX)
    if found is None:
        raise NotFound("no such file of the artifact browser")
    headers = {**HEADERS, "Content-Type": found.content_type, "Cache-Control": found.cache_control}
    return web.FileResponse(found.path, headers=headers)
