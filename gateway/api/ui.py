"""The artifact browser: ``/ui/``, a static application shipped in ``gateway/ui``.

Every ``GET /ui/<path>`` answers the application's one page (``index.html``), so
deep links (``/ui/projects/demo/runs/run_42``) survive a reload; only the files
under ``assets/`` and ``vendor/`` are answered as themselves, and a missing one
there is a ``404``. The page speaks to the public API only, with the principal
token the person enters; nothing here reads a credential.

Every answer carries :data:`HEADERS`: a strict Content-Security-Policy (styles
from this origin only, no inline script or style, no plugin, no base URL, no form
target, framed by nobody, and no frame but the sandboxed ``srcdoc`` of an HTML
preview), ``nosniff`` and ``no-referrer``.

Scripts are not trusted by origin: the page's ``script-src`` is a nonce, fresh
for every answer of the page (:func:`page_policy`), carried by the one
``<script>`` of ``index.html``; the modules it imports, statically or with
``import()``, inherit it. So no other URL of this origin — an artifact's content
or signed URL above all — can run as a script of the page, whatever it answers,
even if markup were ever injected into the page. (A path-restricted source such
as ``…/ui/assets/`` would need the page's public host, which a proxy in front may
rewrite.) The other answers (assets, redirects, problems) run no script at all:
``script-src 'none'``.

A vendored library lives in a folder named with its version
(``vendor/marked-18.2.1/``), so its files never change under a name and are
cached for a year; the other files are revalidated on every load (``no-cache``
with a validator), and the page itself, whose nonce changes, is sent whole.
"""

from __future__ import annotations

import functools
import re
import secrets
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

NONCE_PLACEHOLDER = "__CSP_NONCE__"
"""Where ``index.html`` takes the nonce of its answer (``<script nonce="__CSP_NONCE__">``)."""
NONCE_BYTES = 18


def _policy(script_src: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {script_src}",
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


CONTENT_SECURITY_POLICY = _policy("'none'")
"""The policy of every answer but the page: nothing runs."""


def page_policy(nonce: str) -> str:
    """The page's policy: scripts only with ``nonce`` (and what they import)."""
    return _policy(f"'nonce-{nonce}'")


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


@functools.cache
def page_parts(root: Path = UI_ROOT) -> tuple[str, str]:
    """``index.html`` split at its nonce placeholder (read once)."""
    before, found, after = (root / INDEX).read_text(encoding="utf-8").partition(NONCE_PLACEHOLDER)
    if not found or NONCE_PLACEHOLDER in after:
        raise RuntimeError(f"{INDEX} must carry {NONCE_PLACEHOLDER} exactly once")
    return before, after


def _page() -> web.Response:
    nonce = secrets.token_urlsafe(NONCE_BYTES)
    before, after = page_parts()
    headers = {
        **HEADERS,
        "Content-Security-Policy": page_policy(nonce),
        "Cache-Control": NO_CACHE,
    }
    return web.Response(
        text=before + nonce + after, content_type="text/html", charset="utf-8", headers=headers
    )


async def ui_page(request: web.Request) -> web.StreamResponse:
    """``GET /ui/{path}``: an asset, or the application's page for any other path."""
    path = request.match_info["path"]
    if not path.startswith(ASSET_FOLDERS):
        return _page()
    found = files().get(path)
    if found is None:
        raise NotFound("no such file of the artifact browser")
    headers = {**HEADERS, "Content-Type": found.content_type, "Cache-Control": found.cache_control}
    return web.FileResponse(found.path, headers=headers)
