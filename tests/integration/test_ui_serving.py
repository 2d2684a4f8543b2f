"""``/ui/``: the artifact browser's page and files, and the headers they carry."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient

from gateway.api import ui

CSP_MUST = [
    "default-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
]


def policy(value: str) -> dict[str, str]:
    directives = [d.strip() for d in value.split(";") if d.strip()]
    return {d.split()[0]: d for d in directives}


NONCE = re.compile(r"^script-src 'nonce-([A-Za-z0-9_-]{24,})'$")


def assert_ui_headers(headers, *, page: bool = False) -> None:
    """The browser's headers; ``page``: the HTML page, whose scripts need its nonce."""
    csp = headers["Content-Security-Policy"]
    directives = policy(csp)
    for must in CSP_MUST:
        assert directives[must.split()[0]] == must, csp
    if page:
        assert NONCE.match(directives["script-src"]), csp
    else:
        assert directives["script-src"] == "script-src 'none'", csp
    assert "'self'" not in directives["script-src"]  # no URL is trusted for its origin
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["style-src"] == "style-src 'self'"
    assert directives["connect-src"] == "connect-src 'self'"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in headers


@pytest.mark.parametrize(
    "path",
    [
        "/ui/",
        "/ui/projects/demo",
        "/ui/projects/demo/runs/run_42",
        "/ui/projects/demo/runs/a%2Fb%20c",
        "/ui/projects/demo/sessions/sess_1",
        "/ui/projects/demo/artifacts/art_01JD3K7Q9ZB4M2X8N6V5T1R0PA",
        "/ui/index.html",
        "/ui/anything/else?x=1",
    ],
)
async def test_every_page_path_answers_the_application(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert_ui_headers(resp.headers, page=True)
    body = await resp.text()
    match = NONCE.match(policy(resp.headers["Content-Security-Policy"])["script-src"])
    assert match
    script = f'<script type="module" nonce="{match[1]}" src="/ui/assets/app.js"></script>'
    assert script in body
    assert ui.NONCE_PLACEHOLDER not in body


async def test_every_answer_of_the_page_has_a_fresh_nonce(client: TestClient) -> None:
    nonces = set()
    for _ in range(5):
        resp = await client.get("/ui/projects/demo")
        found = NONCE.match(policy(resp.headers["Content-Security-Policy"])["script-src"])
        assert found
        assert f'nonce="{found[1]}"' in await resp.text()
        nonces.add(found[1])
    assert len(nonces) == 5


async def test_the_shipped_page_has_no_inline_script_style_or_handler(client: TestClient) -> None:
    body = await (await client.get("/ui/")).text()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", body, re.S | re.I)
    assert scripts and all(s.strip() == "" for s in scripts)  # every script is a src
    assert not re.search(r"<style\b", body, re.I)
    assert not re.search(r"\sstyle\s*=", body, re.I)
    assert not re.search(r"\son[a-z]+\s*=", body, re.I)
    assert "javascript:" not in body.lower()


async def test_ui_without_slash_redirects(client: TestClient) -> None:
    resp = await client.get("/ui", allow_redirects=False)
    assert resp.status == 308
    assert resp.headers["Location"] == "/ui/"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/ui/assets/app.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/app.css", "text/css; charset=utf-8"),
        ("/ui/assets/favicon.png", "image/png"),
        ("/ui/vendor/dompurify-3.5.0/purify.es.mjs", "text/javascript; charset=utf-8"),
    ],
)
async def test_assets_are_served_with_their_type(
    client: TestClient, path: str, content_type: str
) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == content_type
    assert_ui_headers(resp.headers)
    relative = path.removeprefix("/ui/")
    assert await resp.read() == (ui.UI_ROOT / relative).read_bytes()


async def test_only_versioned_vendor_files_are_cached_long(client: TestClient) -> None:
    vendored = await client.get("/ui/vendor/marked-18.2.1/marked.esm.js")
    assert vendored.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    own = await client.get("/ui/assets/app.js")
    assert own.headers["Cache-Control"] == "no-cache"
    etag = own.headers["ETag"]
    again = await client.get("/ui/assets/app.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert_ui_headers(again.headers)


@pytest.mark.parametrize(
    "path",
    [
        "/ui/assets/missing.js",
        "/ui/vendor/LICENSE",
        "/ui/vendor/marked-18.2.1/LICENSE",  # shipped, but not a type the page loads
        "/ui/assets/../../api/ui.py",
        "/ui/assets/%2e%2e/%2e%2e/api/ui.py",
        "/ui/vendor/README.md",
    ],
)
async def test_an_asset_that_is_not_shipped_is_404(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    if resp.status == 200:  # a path the client normalised out of assets/: the page
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        return
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert (await resp.json())["code"] == "not_found"


async def test_other_methods_are_refused(client: TestClient) -> None:
    resp = await client.post("/ui/projects/demo", data=b"x")
    assert resp.status == 405
    assert (await resp.json())["code"] == "method_not_allowed"


async def test_the_content_api_keeps_its_own_policy(client: TestClient) -> None:
    """The browser's headers are its own: the API's answers do not carry them."""
    resp = await client.get("/healthz")
    assert "Content-Security-Policy" not in resp.headers
