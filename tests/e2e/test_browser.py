"""A real browser against the serving policy: hostile artifacts run no script, a PNG
displays inline.

Headless Chromium (driven over the DevTools protocol) opens signed content URLs
(no other credential needed). Each hostile artifact tries to call back to a
loopback listener the test runs; the listener must hear nothing. A control page,
served outside the gateway with the same script, proves the listener would hear it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.helpers import READER, lease, new_claim, publish
from tests.integration.test_read import PNG

pytestmark = pytest.mark.timeout(180)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def beacon_script(port: int, tag: str) -> str:
    url = f"http://127.0.0.1:{port}/{tag}"
    return (
        f"<script>fetch('{url}-fetch', {{mode: 'no-cors'}});"
        f"new Image().src = '{url}-img';</script>"
        f"<img src='{url}-tag'>"
    )


class Chromium:
    """Headless Chromium driven over the DevTools protocol (no driver, no extra package)."""

    def __init__(self) -> None:
        assert CHROMIUM, "Chromium is required (scripts/system-deps.sh installs it)"
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = 0

    async def __aenter__(self) -> Chromium:
        assert CHROMIUM
        self.proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": self.profile},  # its scratch folders go too
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not port_file.exists() or not port_file.read_text().strip():
                await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.enable")
        return self

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        self.ids += 1
        await self.ws.send_json({"id": self.ids, "method": method, "params": params})
        async with asyncio.timeout(30):
            while True:
                message = await self.ws.receive_json()
                if message.get("id") == self.ids:
                    result: dict[str, Any] = message.get("result", {})
                    return result

    async def open(self, url: str, settle: float = 2.0) -> None:
        await self.call("Page.navigate", url=url)
        await asyncio.sleep(settle)  # let any script, image or fetch run

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def __aexit__(self, *exc: object) -> None:
        # Browser.close lets Chromium stop its child processes and finish
        # writing its profile; killing only the parent would leave both behind.
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.send_json({"id": self.ids + 1, "method": "Browser.close"})
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.returncode is None:
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


HITS = web.AppKey("hits", list)


@pytest.fixture
async def beacon(aiohttp_server) -> Any:
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="seen")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    app[HITS] = hits
    return await aiohttp_server(app)


async def signed(client: TestClient, project: str, artifact_id: str) -> str:
    resp = await client.post(
        f"/v1/projects/{project}/artifacts/{artifact_id}/signed-url", headers=READER
    )
    assert resp.status == 200
    return str(client.make_url((await resp.json())["url"]))


async def test_control_page_reaches_the_listener(aiohttp_server, beacon) -> None:
    page = f"<!DOCTYPE html><html><body>{beacon_script(beacon.port, 'control')}</body></html>"

    async def serve_page(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", serve_page)
    server = await aiohttp_server(app)
    async with Chromium() as browser:
        await browser.open(str(server.make_url("/")))
    assert {"/control-fetch", "/control-img", "/control-tag"} <= set(beacon.app[HITS])


@pytest.mark.parametrize(
    ("name", "mime", "kind"),
    [
        ("page.html", "text/html", "html"),
        ("logo.svg", "image/svg+xml", "svg"),
        ("photo.png", "image/png", "html-as-png"),
        ("notes.txt", "text/plain", "html-as-text"),
    ],
)
async def test_hostile_artifacts_run_no_script(
    client: TestClient, project, beacon, name: str, mime: str, kind: str
) -> None:
    script = beacon_script(beacon.port, kind)
    if kind == "svg":
        body = (
            '<svg xmlns="http://www.w3.org/2000/svg" onload="fetch(\'http://127.0.0.1:'
            f"{beacon.port}/svg-onload')\"><script>fetch('http://127.0.0.1:{beacon.port}"
            "/svg-script')</script></svg>"
        ).encode()
    else:
        body = f"<!DOCTYPE html><html><body>{script}</body></html>".encode()
    claim = await new_claim(client, project)
    resp = await publish(client, project, lease(claim), body, filename=name, content_type=mime)
    assert resp.status == 201
    url = await signed(client, project, (await resp.json())["id"])
    async with Chromium() as browser:
        await browser.open(url)
        shown = await browser.evaluate("document.documentElement.outerHTML")
    assert beacon.app[HITS] == [], f"{kind}: the browser called back: {beacon.app[HITS]}"
    assert str(beacon.port) not in (shown or "")  # an attachment: nothing was rendered


async def test_png_displays_inline(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    resp = await publish(
        client, project, lease(claim), PNG, filename="plot.png", content_type="image/png"
    )
    url = await signed(client, project, (await resp.json())["id"])
    async with Chromium() as browser:
        await browser.open(url)
        width = await browser.evaluate(
            "document.images.length === 1 ? document.images[0].naturalWidth : -1"
        )
        location = await browser.evaluate("location.href")
    assert location == url  # displayed in the page, not downloaded
    assert width == 1  # the 1x1 PNG decoded and rendered
