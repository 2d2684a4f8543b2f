"""The artifact browser's origin in a real browser: artifact bytes never run as one
of its scripts, an HTML preview asks the gateway for nothing, and a sign-in link
does not silently replace the token a tab is signed in with.

Each defence is shown failing open without it: a control serves the same bytes
with their own JavaScript type (they run), injects a script that carries the
page's nonce (it runs), and renders the same HTML preview without its policy (the
gateway hears it). The gateway here records every request it receives.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.api.protocol import GatewayRunner
from gateway.app import create_app
from gateway.devstack import free_port
from tests.conftest import ALL_SCOPES, make_config, principal_token
from tests.e2e.test_ui import (
    ADMIN_TOKEN,
    AUTH,
    CHROMIUM,
    TIMEOUT,
    TOKEN_KEY,
    Gateway,
    Page,
    publish_file,
    until,
)
from tests.unit.test_javascript_types import WHATWG_JAVASCRIPT

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

OTHER_TOKEN = principal_token("user:mallory", "artifacts:read")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RecordedGateway(Gateway):
    seen: list[str] = field(default_factory=list)  # every path+query the gateway received

    def heard(self, marker: str) -> list[str]:
        return [path for path in self.seen if marker in path]


@pytest.fixture(scope="module")
async def gateway(backends: Any) -> AsyncIterator[RecordedGateway]:
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(request.path_qs)
        return await handler(request)

    app = create_app(make_config(backends))
    app.middlewares.insert(0, record)
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(base_url=base) as http:
        yield RecordedGateway(base, http, seen)
    await runner.cleanup()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    assert CHROMIUM, "Chromium is required (scripts/system-deps.sh installs it)"
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        await chromium.close()


# --- artifact bytes never run as a script of the origin ------------------------------


@dataclass
class Scripts:
    project: str
    body: dict[str, bytes]  # mime -> the artifact's bytes
    content: dict[str, str]  # mime -> content URL (needs the token)
    signed: dict[str, str]  # mime -> signed URL (absolute)


def payload(mime: str) -> bytes:
    return f"window.__ran = (window.__ran || []).concat([{json.dumps(mime)}]);\n".encode()


@pytest.fixture(scope="module")
async def scripts(gateway: RecordedGateway) -> Scripts:
    project = "scripts-" + secrets.token_hex(4)
    found = Scripts(project, {}, {}, {})
    for i, mime in enumerate(WHATWG_JAVASCRIPT):
        body = payload(mime)
        artifact_id = await publish_file(gateway, project, AUTH, f"app-{i}.js", body, mime)
        path = f"/v1/projects/{project}/artifacts/{artifact_id}"
        minted = await gateway.http.post(f"{path}/signed-url", headers=AUTH)
        assert minted.status == 200
        found.body[mime] = body
        found.content[mime] = f"{path}/content"
        found.signed[mime] = gateway.base + (await minted.json())["url"]
    return found


def script_page(urls: list[str]) -> bytes:
    """A page with no policy at all that loads each URL as a classic and as a module
    script, counting the loads that ended (load or error)."""
    tags = "".join(
        f'<script{kind} src="{html.escape(url)}" onload="window.__ended++"'
        ' onerror="window.__ended++"></script>'
        for url in urls
        for kind in ("", ' type="module"')
    )
    return f"<!DOCTYPE html><script>window.__ended = 0;</script>{tags}".encode()


async def serve(context: Any, url: str, body: bytes, content_type: str) -> None:
    async def fulfill(route: Any) -> None:
        await route.fulfill(
            status=200,
            body=body,
            headers={"Content-Type": content_type, "X-Content-Type-Options": "nosniff"},
        )

    await context.route(url, fulfill)


async def test_no_artifact_runs_as_a_script_of_the_origin(
    browser: Any, gateway: RecordedGateway, scripts: Scripts
) -> None:
    """A page of the gateway's origin with no defence of its own (as an injected page
    would be) loads every JavaScript artifact's content URL (with the token) and
    signed URL as scripts: none runs. The control serves the same bytes with their
    own type from the same origin: every one runs."""
    urls = [*scripts.content.values(), *scripts.signed.values()]
    session = Page(browser, gateway, None)
    async with session as page:
        await session.context.set_extra_http_headers(AUTH)  # <script src> sends the token
        await serve(
            session.context, f"{gateway.base}/ui/attack.html", script_page(urls), "text/html"
        )
        await page.goto("/ui/attack.html")
        await until(page, f"window.__ended === {2 * len(urls)}")
        await asyncio.sleep(0.3)
        assert await page.evaluate("window.__ran") is None
    assert set(gateway.heard("/content")) >= {
        *scripts.content.values(),
        *(url.removeprefix(gateway.base) for url in scripts.signed.values()),
    }  # the browser did ask for every one

    control = Page(browser, gateway, None)
    async with control as page:
        own = []
        for i, mime in enumerate(WHATWG_JAVASCRIPT):
            url = f"{gateway.base}/ui/control-{i}.js"
            await serve(control.context, url, scripts.body[mime], mime)
            own.append(url)
        await serve(
            control.context, f"{gateway.base}/ui/control.html", script_page(own), "text/html"
        )
        await page.goto("/ui/control.html")
        await until(page, f"window.__ended === {2 * len(own)}")
        ran = await page.evaluate("window.__ran")
    assert sorted(set(ran)) == sorted(WHATWG_JAVASCRIPT)


async def test_the_browser_page_runs_only_its_own_scripts(
    browser: Any, gateway: RecordedGateway, scripts: Scripts
) -> None:
    """Script injected into the browser's page — a signed URL of a JavaScript artifact,
    or any other URL of the origin that answers JavaScript — is refused by the page's
    policy (its scripts need the answer's nonce); the control gives the same injected
    script the nonce, and it runs."""
    injected = f"{gateway.base}/ui/assets/injected.js"
    inject = """([src, withNonce]) => new Promise((resolve) => {
      const s = document.createElement('script');
      if (withNonce) s.nonce = document.querySelector('script[nonce]').nonce;
      s.src = src;
      s.onload = () => resolve('load');
      s.onerror = () => resolve('error');
      document.head.append(s);
    })"""
    session = Page(browser, gateway, ADMIN_TOKEN)
    async with session as page:
        await serve(session.context, injected, payload("injected"), "text/javascript")
        await page.goto("/ui/")
        await page.locator("form.signin").wait_for()
        for url in [injected, *scripts.signed.values()]:
            assert await page.evaluate(inject, [url, False]) == "error", url
        assert await page.evaluate("window.__ran") is None
        violations = await page.evaluate("window.__violations")
        assert sum(v.startswith("script-src-elem") for v in violations) == 1 + len(scripts.signed)
        # the control: the page's own nonce lets the same injection run
        assert await page.evaluate(inject, [injected, True]) == "load"
        assert await page.evaluate("window.__ran") == ["injected"]


# --- an HTML preview asks the gateway for nothing -------------------------------------

PROBES = {
    "img": '<img src="/probe/img" alt="">',
    "srcset": '<img srcset="/probe/srcset 1x" alt="">',
    "picture": '<picture><source srcset="/probe/picture"><img alt=""></picture>',
    "video": '<video src="/probe/video" poster="/probe/poster" preload="auto"></video>',
    "audio": '<audio src="/probe/audio" preload="auto"><track src="/probe/track"></audio>',
    "input": '<input type="image" src="/probe/input" alt="">',
    "object": '<object data="/probe/object"></object><embed src="/probe/embed">',
    "iframe": '<iframe src="/probe/iframe"></iframe>',
    "svg": '<svg><image href="/probe/svg-image" width="4" height="4"/></svg>',
    "table": '<table background="/probe/table"><tr><td>x</td></tr></table>',
    "style": "<style>@import '/probe/import'; p { background: url(/probe/css) }</style>",
    "inline-style": '<p style="background: url(/probe/inline-style)">styled</p>',
    "absolute": '<img src="{base}/probe/absolute" alt="">',
}
HEAD_PROBES = (
    '<meta http-equiv="refresh" content="0; url=/probe/refresh">'
    '<meta http-equiv="Content-Security-Policy" content="img-src *">'
    '<link rel="prefetch" href="/probe/prefetch">'
    '<link rel="preload" as="image" href="/probe/preload">'
    '<link rel="modulepreload" href="/probe/modulepreload">'
    '<link rel="stylesheet" href="/probe/stylesheet">'
    '<link rel="icon" href="/probe/icon">'
    '<link rel="manifest" href="/probe/manifest">'
)


def hostile_html(base: str) -> bytes:
    body = "".join(probe.replace("{base}", base) for probe in PROBES.values())
    return (
        f'<!DOCTYPE html><html lang="en"><head>{HEAD_PROBES}<title>t</title></head>'
        f'<body background="/probe/background"><h1>Report</h1>{body}</body></html>'
    ).encode()


async def test_an_html_preview_requests_nothing_from_the_gateway(
    browser: Any, gateway: RecordedGateway
) -> None:
    project = "preview-" + secrets.token_hex(4)
    body = hostile_html(gateway.base)
    artifact_id = await publish_file(gateway, project, AUTH, "report.html", body, "text/html")
    session = Page(browser, gateway, ADMIN_TOKEN)
    async with session as page:
        await page.goto(f"/ui/projects/{project}/artifacts/{artifact_id}")
        frame = page.frame_locator(".preview iframe.html-preview")
        assert await frame.locator("h1").inner_text() == "Report"
        await asyncio.sleep(1.5)  # let anything that would load, load
        assert gateway.heard("/probe") == []
        # the browser may report a request it then blocks: none got an answer
        for request in [r for r in session.requests if "/probe" in r.url]:
            assert await request.response() is None, request.url
            assert request.failure == "csp", (request.url, request.failure)

        # the control: the same markup, framed as the preview was without its policy
        await page.evaluate(
            """(text) => {
              const frame = document.createElement('iframe');
              frame.setAttribute('sandbox', '');
              frame.srcdoc = text;
              document.body.append(frame);
            }""",
            body.decode(),
        )
        async with asyncio.timeout(TIMEOUT / 1000):
            while not {"/probe/img", "/probe/video", "/probe/prefetch"} <= set(
                gateway.heard("/probe")
            ):
                await asyncio.sleep(0.05)
    heard = set(gateway.heard("/probe"))
    gateway.seen.clear()
    assert {"/probe/img", "/probe/srcset", "/probe/stylesheet", "/probe/absolute"} <= heard


# --- a sign-in link does not replace the token of a signed-in tab ---------------------


async def stored(page: Any) -> str | None:
    value: str | None = await page.evaluate(f"sessionStorage.getItem({json.dumps(TOKEN_KEY)})")
    return value


async def test_a_link_with_another_token_asks_before_switching(
    browser: Any, gateway: RecordedGateway
) -> None:
    session = Page(browser, gateway, ADMIN_TOKEN)
    async with session as page:
        await page.goto(f"/ui/#token={OTHER_TOKEN}")
        offer = page.get_by_role("region", name="Sign-in link")
        await offer.wait_for()
        text = await offer.inner_text()
        assert "This link signs you in as user:mallory (artifacts:read)" in text
        assert "You are signed in as user:admin" in text
        assert "token" not in page.url  # the fragment left the address bar at once
        assert await stored(page) == ADMIN_TOKEN  # nothing changed yet
        assert await page.locator("#who .sub").inner_text() == "user:admin"
        await offer.get_by_role("button", name="Keep user:admin").click()
        await offer.wait_for(state="hidden")
        assert await stored(page) == ADMIN_TOKEN

        # the same offer on a fragment set later (hashchange), and this time: switch
        await page.evaluate(f"location.hash = {json.dumps('#token=' + OTHER_TOKEN)}")
        await offer.wait_for()
        assert "token" not in await page.evaluate("location.href")
        await offer.get_by_role("button", name="Switch to user:mallory").click()
        await offer.wait_for(state="hidden")
        assert await stored(page) == OTHER_TOKEN
        await until(page, "document.querySelector('#who .sub')?.textContent === 'user:mallory'")

        # a link carrying a token that is no token, or expired, changes nothing
        expired = principal_token("user:old", ALL_SCOPES, ttl=-60)
        for bad, says in (("not-a-token", "is not valid"), (expired, "has expired")):
            await page.evaluate(f"location.hash = {json.dumps('#token=' + bad)}")
            await offer.wait_for()
            assert says in await offer.inner_text()
            assert await offer.get_by_role("button", name="Switch", exact=False).count() == 0
            await offer.get_by_role("button", name="Keep user:mallory").click()
            await offer.wait_for(state="hidden")
            assert await stored(page) == OTHER_TOKEN


async def test_the_same_token_or_no_token_signs_in_without_asking(
    browser: Any, gateway: RecordedGateway
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/#token={ADMIN_TOKEN}")
        await page.get_by_text("Signed in as").wait_for()
        await asyncio.sleep(0.3)
        assert await page.get_by_role("region", name="Sign-in link").count() == 0
        assert await page.locator("section.token-offer").is_hidden()
        assert "token" not in page.url
    async with Page(browser, gateway, None) as page:
        await page.goto(f"/ui/#token={OTHER_TOKEN}")
        await page.get_by_text("Signed in as").wait_for()
        assert await page.locator("section.token-offer").is_hidden()
        assert await stored(page) == OTHER_TOKEN
        assert await page.locator("#who .sub").inner_text() == "user:mallory"


async def test_every_javascript_type_previews_as_source(
    browser: Any, gateway: RecordedGateway, scripts: Scripts
) -> None:
    """Served as downloads, shown as source: the page reads the bytes, never runs them."""
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        for mime in ("application/x-javascript", "text/livescript", "text/javascript1.3"):
            artifact_id = scripts.content[mime].split("/")[-2]
            await page.goto(f"/ui/projects/{scripts.project}/artifacts/{artifact_id}")
            source = page.locator(".preview .source[data-language='javascript']")
            await source.wait_for()
            assert mime in await source.locator(".code").inner_text()
        assert await page.evaluate("window.__ran") is None
        assert await page.evaluate("window.__violations") == []
