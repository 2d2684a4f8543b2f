"""The artifact browser in a real browser: headless Chromium (Debian's ``chromium``)
driven by Playwright, against a gateway on a real port with the real backends.

One browser, one gateway and the seeded projects are shared by the module; each
test opens a fresh browser context (its own sessionStorage). Hostile artifacts try
to run script: a window flag and a loopback listener (the beacon) must stay silent,
and a control page that renders the same payloads without the browser's defences
proves the beacon would have heard them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.api.protocol import GatewayRunner
from gateway.app import create_app
from gateway.demo import chart
from gateway.devstack import free_port
from tests.conftest import ALL_SCOPES, make_config, principal_token
from tests.helpers import lease, new_claim, publish

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
UI_VENDOR = Path(__file__).resolve().parents[2] / "gateway" / "ui" / "vendor"
TOKEN_KEY = "mobius-artifacts.token"
ADMIN_TOKEN = principal_token("user:admin", ALL_SCOPES)
READER_TOKEN = principal_token("user:reader", "artifacts:read")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TIMEOUT = 15_000  # ms, for anything the page waits on

PLOT = chart([[1 - i / 30 for i in range(31)], [0.5 + 0.3 * (i % 7) / 7 for i in range(31)]])
MARKDOWN = b"# Results\n\nThe *loss* fell.\n\n```python\nimport json\nprint(json.dumps({}))\n```\n"
CODE = b'import json\n\n\ndef main() -> None:\n    print(json.dumps({"ok": True}))\n'
CSV = b"epoch,loss\n0,0.9\n1,0.5\n2,0.25\n"
JSON_TEXT = b'{"big": 12345678901234567890, "list": [1, 2], "nested": {"a": "b"}}'
BENIGN_HTML = b"<!DOCTYPE html><html><body><h1>Summary</h1><p>All green.</p></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="#2457c5"/></svg>'  # noqa: E501
XML = b'<?xml version="1.0"?><config><item key="a">1</item></config>'
LOG = b"".join(f"line {i}: all good\n".encode() for i in range(1, 41))
BIG_LOG = b"".join(f"{i:07d} a line of a long log\n".encode() for i in range(1, 12_001))


@dataclass
class Gateway:
    base: str
    http: aiohttp.ClientSession


@dataclass
class Seeded:
    project: str
    run: str
    session: str
    other_run: str
    many_run: str
    ids: dict[str, str] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Beacon:
    port: int
    hits: list[str]
    controls: dict[str, tuple[bytes, str]]  # path -> (body, content type) of control pages

    def url(self, tag: str) -> str:
        return f"http://127.0.0.1:{self.port}/{tag}"


@pytest.fixture(scope="module")
async def gateway(backends: Any) -> AsyncIterator[Gateway]:
    runner = GatewayRunner(create_app(make_config(backends)), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(base_url=base) as http:
        yield Gateway(base, http)
    await runner.cleanup()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    assert CHROMIUM, "Chromium is required (scripts/system-deps.sh installs it)"
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        await chromium.close()


@pytest.fixture(scope="module")
async def beacon() -> AsyncIterator[Beacon]:
    """A loopback listener that records every request, and serves the control pages."""
    hits: list[str] = []
    controls: dict[str, tuple[bytes, str]] = {}

    async def record(request: web.Request) -> web.StreamResponse:
        if request.path in controls:
            body, content_type = controls[request.path]
            return web.Response(body=body, content_type=content_type)
        if request.path.startswith("/vendor/"):
            path = (UI_VENDOR / request.path.removeprefix("/vendor/")).resolve()
            assert path.is_relative_to(UI_VENDOR)
            return web.Response(body=path.read_bytes(), content_type="text/javascript")
        hits.append(request.path)
        return web.Response(text="heard")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Beacon(port, hits, controls)
    await runner.cleanup()


async def publish_file(
    gw: Gateway,
    project: str,
    headers: dict[str, str],
    filename: str,
    body: bytes,
    mime: str,
    **kw: str,
) -> str:
    resp = await publish(
        gw.http, project, headers, body, filename=filename, content_type=mime, **kw
    )
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


@pytest.fixture(scope="module")
async def seeded(gateway: Gateway) -> Seeded:
    gw = gateway
    tag = secrets.token_hex(4)
    seeded = Seeded(
        project=f"ui-{tag}",
        run=f"run_main_{tag}",
        session=f"sess_{tag}",
        other_run=f"run_other_{tag}",
        many_run=f"run_many_{tag}",
    )
    p = seeded.project

    async def step(run: str, step_id: str, files: list[tuple[str, bytes, str]], **kw: Any) -> None:
        claim = await new_claim(gw.http, p, run_id=run, step_id=step_id, session_id=seeded.session)
        for name, body, mime in files:
            seeded.ids[name] = await publish_file(gw, p, lease(claim), name, body, mime, **kw)
            seeded.bodies[name] = body

    await step(
        seeded.run,
        "data",
        [("table.csv", CSV, "text/csv"), ("data.json", JSON_TEXT, "application/json")],
    )
    await step(
        seeded.run, "train", [("train.py", CODE, "text/x-python"), ("train.log", LOG, "text/plain")]
    )
    await step(
        seeded.run,
        "report",
        [("plot.png", PLOT, "image/png"), ("report.md", MARKDOWN, "text/markdown")],
        description="Charts and notes.",
    )
    await step(
        seeded.run,
        "extras",
        [
            ("page.html", BENIGN_HTML, "text/html"),
            ("logo.svg", SVG, "image/svg+xml"),
            ("conf.xml", XML, "application/xml"),
        ],
    )
    await step(seeded.other_run, "eval", [("other.txt", b"from the other run\n", "text/plain")])
    big = await new_claim(gw.http, p, run_id=f"run_big_{tag}", step_id="log", session_id="sess_big")
    seeded.ids["big.log"] = await publish_file(gw, p, lease(big), "big.log", BIG_LOG, "text/plain")
    many = await new_claim(
        gw.http, p, run_id=seeded.many_run, step_id="bulk", session_id="sess_bulk"
    )
    await asyncio.gather(
        *(
            publish_file(gw, p, lease(many), f"bulk-{i:02d}.txt", b"bulk\n", "text/plain")
            for i in range(53)
        )
    )
    seeded.ids["notes.md"] = await publish_file(
        gw, p, AUTH, "notes.md", b"# Notes\n", "text/markdown"
    )
    return seeded


class Page:
    """A fresh browser context and page, signed in (or not), recording CSP violations."""

    def __init__(self, browser: Any, gateway: Gateway, token: str | None) -> None:
        self.browser = browser
        self.gateway = gateway
        self.token = token
        self.requests: list[Any] = []

    async def __aenter__(self) -> Any:
        self.context = await self.browser.new_context(
            base_url=self.gateway.base, viewport={"width": 1280, "height": 900}
        )
        self.context.set_default_timeout(TIMEOUT)
        script = (
            "window.__violations = [];"
            "document.addEventListener('securitypolicyviolation',"
            " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        if self.token:
            script += f"sessionStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(self.token)});"
        await self.context.add_init_script(script)
        page = await self.context.new_page()
        # a bound builtin is no handler for Playwright: it wants a Python function
        page.on("request", lambda request: self.requests.append(request))  # noqa: PLW0108
        return page

    async def __aexit__(self, *exc: object) -> None:
        await self.context.close()


async def until(page: Any, expression: str, timeout: float = TIMEOUT / 1000) -> None:
    """Wait until ``expression`` is true in the page. (Playwright's wait_for_function
    polls with eval, which the page's CSP rightly refuses.)"""
    async with asyncio.timeout(timeout):
        while not await page.evaluate(expression):
            await asyncio.sleep(0.05)


async def no_violations(page: Any) -> None:
    assert await page.evaluate("window.__violations") == []


def artifact_url(seeded: Seeded, name: str) -> str:
    return f"/ui/projects/{seeded.project}/artifacts/{seeded.ids[name]}"


# --- signing in -------------------------------------------------------------------


async def test_a_token_in_the_fragment_signs_in_and_leaves_the_address_bar(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    session = Page(browser, gateway, None)
    async with session as page:
        await page.goto(f"/ui/projects/{seeded.project}#token={ADMIN_TOKEN}")
        await page.get_by_role("heading", name="Gallery").wait_for()
        await page.locator(".card").first.wait_for()
        assert page.url == f"{gateway.base}/ui/projects/{seeded.project}"
        assert "token" not in await page.evaluate("location.href")
        assert (
            await page.evaluate(f"sessionStorage.getItem({json.dumps(TOKEN_KEY)})") == ADMIN_TOKEN
        )
        assert await session.context.cookies() == []
        # the token travels only as a header, never in a URL, and no cookie is sent
        sent = [r for r in session.requests if r.url.startswith(gateway.base + "/v1/")]
        assert sent
        for request in sent:
            assert ADMIN_TOKEN not in request.url
            headers = await request.all_headers()
            assert headers.get("authorization") == f"Bearer {ADMIN_TOKEN}"
            assert "cookie" not in headers
        assert all(ADMIN_TOKEN not in r.url for r in session.requests)
        # a reload keeps the tab signed in
        await page.reload()
        await page.locator(".card").first.wait_for()
        await no_violations(page)


async def test_without_a_token_the_page_asks_for_one_and_signs_in(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    async with Page(browser, gateway, None) as page:
        await page.goto(f"/ui/projects/{seeded.project}/runs/{seeded.run}")
        await page.get_by_text("Sign in to see this page.").wait_for()
        await page.get_by_label("Principal token").fill("not a token")
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_text("That is not a token").wait_for()
        await page.get_by_label("Principal token").fill(ADMIN_TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await page.locator(".group[data-group='report'] .card").first.wait_for()
        await no_violations(page)


async def test_a_first_visit_asks_to_sign_in_and_not_to_sign_in_again(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    """With no token at all, nothing was refused or expired: the home page is the
    plain form and a deep link says it needs a token; only a token the tab had
    and lost asks to sign in "again"."""
    async with Page(browser, gateway, None) as page:
        await page.goto("/ui/")
        await page.get_by_role("heading", name="Artifact browser").wait_for()
        await page.get_by_label("Principal token").wait_for()
        assert "again" not in (await page.locator("main").inner_text()).lower()
        for path in (
            f"/ui/projects/{seeded.project}",
            f"/ui/projects/{seeded.project}/runs",
            artifact_url(seeded, "train.py"),
        ):
            await page.goto(path)
            await page.get_by_text("Sign in to see this page.").wait_for()
            headings = await page.locator("main h1").all_inner_texts()
            assert headings == ["Sign in"], headings
            assert await page.locator("main [role='alert']:not(:empty)").count() == 0
            assert "again" not in (await page.locator("main").inner_text()).lower()
            assert await page.get_by_role("button", name="Sign in").is_visible()
        await no_violations(page)
    async with Page(browser, gateway, "garbage") as page:  # a token the tab had, unreadable
        await page.goto(f"/ui/projects/{seeded.project}")
        await page.get_by_role("heading", name="Sign in again").wait_for()


async def test_a_refused_token_brings_sign_in_back_and_403_404_say_so(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    forged = principal_token("user:admin", ALL_SCOPES)[:-4] + "AAAA"
    async with Page(browser, gateway, forged) as page:
        await page.goto(f"/ui/projects/{seeded.project}")
        alert = page.get_by_role("alert").filter(has_text="The gateway refused the token")
        await alert.wait_for()
        await page.get_by_role("heading", name="Sign in again").wait_for()
        assert "unauthenticated" in await alert.inner_text()
        await page.get_by_label("Principal token").wait_for()
    outsider = principal_token("user:eve", "artifacts:read", projects=["elsewhere"])
    async with Page(browser, gateway, outsider) as page:
        await page.goto(artifact_url(seeded, "plot.png"))
        await page.get_by_role("heading", name="Not found").wait_for()
        assert "your token may not see it" in await page.get_by_role("alert").inner_text()
    no_scope = principal_token("user:bob", "claims:write")
    async with Page(browser, gateway, no_scope) as page:
        await page.goto(f"/ui/projects/{seeded.project}")
        await page.get_by_role("heading", name="Forbidden").wait_for()


# --- pages and deep links ---------------------------------------------------------


async def test_every_deep_link_survives_a_reload(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    p = seeded.project
    pages = [
        (f"/ui/projects/{p}", ".card[data-id]"),
        (f"/ui/projects/{p}/runs", f"tr[data-run='{seeded.run}']"),
        (f"/ui/projects/{p}/sessions", f"tr[data-session='{seeded.session}']"),
        (f"/ui/projects/{p}/runs/{seeded.run}", ".group[data-group='train'] .card"),
        (f"/ui/projects/{p}/sessions/{seeded.session}", f".group[data-group='{seeded.other_run}']"),
        (artifact_url(seeded, "train.py"), "h1.artifact-name"),
        ("/ui/", "form.signin"),
    ]
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        for path, selector in pages:
            for _ in range(2):  # opened, then reloaded
                if _ == 0:
                    await page.goto(path)
                else:
                    await page.reload()
                await page.locator(selector).first.wait_for()
                assert page.url == gateway.base + path
        await no_violations(page)


async def test_run_view_groups_by_step_and_session_view_by_run(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{seeded.project}/runs/{seeded.run}")
        await page.locator(".group").first.wait_for()
        groups = await page.locator(".group").evaluate_all("g => g.map(e => e.dataset.group)")
        assert groups == ["data", "train", "report", "extras"]  # in run order
        names = await page.locator(".group[data-group='report'] .card-name").all_inner_texts()
        assert sorted(names) == ["plot.png", "report.md"]
        # the session rolls up both runs; a group's heading opens its run
        await page.get_by_role("link", name=f"Session {seeded.session}").click()
        await page.locator(f".group[data-group='{seeded.other_run}']").wait_for()
        groups = await page.locator(".group").evaluate_all("g => g.map(e => e.dataset.group)")
        assert groups == [seeded.other_run, seeded.run]
        await page.get_by_role("link", name=seeded.other_run, exact=True).click()
        await page.get_by_role("heading", name=f"Run {seeded.other_run}").wait_for()
        assert await page.locator(".card-name").all_inner_texts() == ["other.txt"]
        # a card opens its artifact, whose lineage links back
        await page.locator(".card").first.click()
        await page.locator("h1.artifact-name").wait_for()
        assert await page.locator("h1.artifact-name").inner_text() == "other.txt"
        await no_violations(page)


async def test_type_filters_name_search_and_lineage_filters(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{seeded.project}")
        await page.locator(".card").first.wait_for()
        tabs = page.locator(".filters .tabs button")
        assert await tabs.all_inner_texts() == ["All", "Images", "HTML", "Code", "Text", "Other"]

        async def names_after(action: Any, wanted: str) -> list[str]:
            """Names on the page once the listing whose query holds ``wanted`` is shown."""
            async with page.expect_response(lambda r: "/artifacts?" in r.url and wanted in r.url):
                await action()
            await until(page, "document.querySelector('.results').ariaBusy === 'false'")
            return sorted(await page.locator(".card-name").all_inner_texts())

        images = await names_after(lambda: tabs.get_by_text("Images").click(), "mime_class=image")
        assert images == ["logo.svg", "plot.png"]
        assert "type=image" in page.url
        html = await names_after(lambda: tabs.get_by_text("HTML").click(), "mime_class=html")
        assert html == ["page.html"]
        code = await names_after(lambda: tabs.get_by_text("Code").click(), "mime_class=code")
        assert code == ["train.py"]
        other = await names_after(lambda: tabs.get_by_text("Other").click(), "mime_class=other")
        assert other == ["conf.xml"]
        text = await names_after(lambda: tabs.get_by_text("Text").click(), "mime_class=text")
        assert len(text) == 50 and "notes.md" in text  # newest first: the bulk run's too
        assert not {"train.py", "plot.png", "page.html", "conf.xml"} & set(text)
        # a reload keeps the filter
        await page.reload()
        await page.locator(".card").first.wait_for()
        assert await page.locator(".tab[aria-pressed='true']").inner_text() == "Text"
        everything = await names_after(lambda: tabs.get_by_text("All").click(), "?limit=50")
        assert len(everything) == 50
        name = page.get_by_label("Name starts with")
        assert await names_after(lambda: name.fill("tr"), "name_prefix=tr") == [
            "train.log",
            "train.py",
        ]
        await names_after(lambda: name.fill(""), "?limit=50")
        run = page.get_by_label("Run id")
        await run.fill(seeded.other_run)
        assert await names_after(lambda: run.press("Enter"), "run_id=") == ["other.txt"]
        await run.fill("")
        session = page.get_by_label("Session id")
        await session.fill("sess_bulk")
        await session.press("Enter")
        await until(page, "document.querySelectorAll('.card').length === 50")
        assert "session=sess_bulk" in page.url and "run=" not in page.url
        await no_violations(page)


async def test_paging_with_load_more(browser: Any, gateway: Gateway, seeded: Seeded) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{seeded.project}/runs/{seeded.many_run}")
        await page.locator(".card").first.wait_for()
        assert await page.locator(".card").count() == 50
        more = page.get_by_role("button", name="Load more")
        await more.click()
        await until(page, "document.querySelectorAll('.card').length === 53")
        assert await more.is_hidden()
        names = await page.locator(".card-name").all_inner_texts()
        assert len(set(names)) == 53


async def test_the_project_page_lists_runs_and_sessions_newest_first_with_counts_and_sizes(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    main_files = [
        "table.csv", "data.json", "train.py", "train.log", "plot.png", "report.md",
        "page.html", "logo.svg", "conf.xml",
    ]  # fmt: skip
    main_bytes = sum(len(seeded.bodies[name]) for name in main_files)
    big_run = f"run_big_{seeded.project.removeprefix('ui-')}"
    expected_runs = {  # newest first: run id -> (artifacts, bytes)
        seeded.many_run: (53, 53 * len(b"bulk\n")),
        big_run: (1, len(BIG_LOG)),
        seeded.other_run: (1, len(b"from the other run\n")),
        seeded.run: (9, main_bytes),
    }
    expected_sessions = {
        "sess_bulk": (53, 53 * len(b"bulk\n")),
        "sess_big": (1, len(BIG_LOG)),
        seeded.session: (10, main_bytes + len(b"from the other run\n")),
    }
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{seeded.project}")
        await page.locator(".card").first.wait_for()
        await page.get_by_role("link", name="Runs and sessions").click()
        await page.get_by_role("heading", name="Runs and sessions").wait_for()
        assert page.url == f"{gateway.base}/ui/projects/{seeded.project}/runs"
        await page.locator("tr[data-run]").first.wait_for()
        # the page says how deep it looked: here, every artifact of the project
        scan = await page.locator(".scan").inner_text()
        assert scan.startswith("From all ") and "newest 1,000 at most" in scan, scan

        async def rows(kind: str) -> dict[str, tuple[int, int]]:
            found = {}
            for row in await page.locator(f"tr[data-{kind}]").all():
                key = await row.get_attribute(f"data-{kind}")
                count = int((await row.locator(".artifacts").inner_text()).replace(",", ""))
                size = await row.locator(".bytes span").get_attribute("title") or ""
                found[key or ""] = (count, int(size.removesuffix(" bytes").replace(",", "")))
            return found

        runs = await rows("run")
        assert list(runs) == list(expected_runs) and runs == expected_runs, runs
        sessions = await rows("session")
        assert list(sessions) == list(expected_sessions) and sessions == expected_sessions
        main_row = page.locator(f"tr[data-run='{seeded.run}']")
        assert (await main_row.locator("td").nth(2).inner_text()) == "4"  # steps
        assert "published by principals" in await page.locator(".principal").inner_text()
        # a run opens its page; a session its own
        await main_row.get_by_role("link", name=seeded.session).click()
        await page.get_by_role("heading", name=f"Session {seeded.session}").wait_for()
        await page.go_back()
        await page.get_by_role("link", name=seeded.other_run, exact=True).click()
        await page.get_by_role("heading", name=f"Run {seeded.other_run}").wait_for()
        await page.get_by_role("link", name="Runs and sessions").click()
        await page.locator("tr[data-run]").first.wait_for()
        # a new run appears live, first; deleted, it goes
        await page.locator(".live[data-state='live']").wait_for()
        claim = await new_claim(gateway.http, seeded.project, run_id="run_live", step_id="s")
        late = await publish_file(
            gateway, seeded.project, lease(claim), "late.txt", b"late\n", "text/plain"
        )
        await (
            page.locator("tr[data-run]")
            .first.and_(page.locator("[data-run='run_live']"))
            .wait_for()
        )
        resp = await gateway.http.delete(
            f"/v1/projects/{seeded.project}/artifacts/{late}", headers=AUTH
        )
        assert resp.status == 204
        await page.locator("tr[data-run='run_live']").wait_for(state="detached")
        await no_violations(page)


async def test_the_gallery_shows_the_quota_compactly_and_keeps_it_current(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    async def quota() -> dict[str, int]:
        resp = await gateway.http.get(
            f"/v1/projects/{seeded.project}/artifacts/quota", headers=AUTH
        )
        assert resp.status == 200
        result: dict[str, int] = await resp.json()
        return result

    async with Page(browser, gateway, READER_TOKEN) as page:
        await page.goto(f"/ui/projects/{seeded.project}")
        shown = page.locator(".page-head .quota")
        await shown.wait_for()
        await page.locator(".live[data-state='live']").wait_for()
        q = await quota()
        count = f"{q['artifact_count']:,} of {q['limit_artifacts']:,} artifacts"
        assert await shown.locator(".quota-count").inner_text() == count
        assert q["limit_bytes"] == 10 * 1024**3
        used = await shown.locator(".quota-bytes").inner_text()
        assert used.endswith(" KiB of 10 GiB"), used  # the seeded bytes, in KiB
        title = await shown.get_attribute("title") or ""
        assert f"{q['used_bytes']:,} of {q['limit_bytes']:,} bytes used" in title, title
        assert len(await shown.inner_text()) < 80  # compact: one short line
        # a publish the reader can see moves it, live
        claim = await new_claim(gateway.http, seeded.project, run_id="run_quota", step_id="probe")
        extra = await publish_file(
            gateway, seeded.project, lease(claim), "quota-probe.txt", b"probe\n", "text/plain"
        )
        try:
            after = f"{q['artifact_count'] + 1:,} of {q['limit_artifacts']:,} artifacts"
            await page.locator(".quota-count", has_text=after).wait_for()
        finally:
            resp = await gateway.http.delete(
                f"/v1/projects/{seeded.project}/artifacts/{extra}", headers=AUTH
            )
            assert resp.status == 204
        await page.locator(".quota-count", has_text=count).wait_for()
        # only the gallery carries it
        await page.goto(f"/ui/projects/{seeded.project}/runs/{seeded.run}")
        await page.locator(".group").first.wait_for()
        assert await page.locator(".quota").count() == 0
        await no_violations(page)


async def test_empty_states_say_no_artifacts_and_what_the_filter_was(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{seeded.project}/runs/run_that_published_nothing")
        empty = page.locator(".empty")
        await empty.wait_for()
        assert "No artifacts" in await empty.inner_text()
        assert "run_that_published_nothing" in await empty.inner_text()
        await page.goto(f"/ui/projects/{seeded.project}?type=html&name=zzz")
        await empty.wait_for()
        text = await empty.inner_text()
        assert "No artifacts" in text and "of type HTML" in text and "zzz" in text
        await page.goto("/ui/projects/a-project-nobody-used")
        await empty.wait_for()
        assert "No artifacts" in await empty.inner_text()
        await no_violations(page)


async def test_new_artifacts_appear_live_and_deleted_ones_go(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{seeded.project}/runs/{seeded.run}")
        await page.locator(".live[data-state='live']").wait_for()
        claim = await new_claim(
            gateway.http, seeded.project, run_id=seeded.run, step_id="late", session_id="s"
        )
        late = await publish_file(
            gateway, seeded.project, lease(claim), "late.txt", b"late\n", "text/plain"
        )
        card = page.locator(f".card[data-id='{late}']")
        await card.wait_for()
        assert "fresh" in (await card.get_attribute("class") or "")
        assert await page.locator(".group").last.get_attribute("data-group") == "late"
        resp = await gateway.http.delete(
            f"/v1/projects/{seeded.project}/artifacts/{late}", headers=AUTH
        )
        assert resp.status == 204
        await card.wait_for(state="detached")
        await no_violations(page)


async def test_when_the_token_expires_live_stops_and_sign_in_comes_back(
    browser: Any, backends: Any, seeded: Seeded
) -> None:
    """The gateway ends the page's event stream at the token's expiry (no leeway
    here) with a final token_expired event: the page stops showing "live" and asks
    to sign in again, saying why, though nothing else was requested meanwhile."""
    runner = GatewayRunner(
        create_app(make_config(backends, auth_leeway_seconds=0)), access_log=None
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            brief = principal_token("user:brief", "artifacts:read", ttl=5)
            async with Page(browser, Gateway(f"http://127.0.0.1:{port}", http), brief) as page:
                await page.goto(f"/ui/projects/{seeded.project}")
                await page.locator(".live[data-state='live']").wait_for()
                heading = page.locator("h1", has_text="Sign in again")
                await heading.wait_for(timeout=15_000)
                alert = await page.locator("p.error[role='alert']").first.inner_text()
                assert "expired" in alert and "live updates stopped" in alert
                assert await page.locator(".live").count() == 0
                assert await page.locator("textarea#token").is_visible()
                stored = await page.evaluate(f"sessionStorage.getItem({json.dumps(TOKEN_KEY)})")
                assert stored is None
                await no_violations(page)
    finally:
        await runner.cleanup()


# --- the artifact page and its previews ------------------------------------------


async def test_previews_by_type(browser: Any, gateway: Gateway, seeded: Seeded) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(artifact_url(seeded, "plot.png"))
        image = page.locator(".preview img.full")
        await image.wait_for()
        await until(
            page,
            "document.querySelector('.preview img.full').complete && "
            "document.querySelector('.preview img.full').naturalWidth > 0",
        )
        assert await image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [640, 360]

        await page.goto(artifact_url(seeded, "report.md"))
        heading = page.locator(".preview article.markdown h1")
        await heading.wait_for()
        assert await heading.inner_text() == "Results"
        assert await page.locator(".preview article.markdown em").inner_text() == "loss"
        assert await page.locator(".preview article.markdown .hljs-keyword").count() >= 1

        await page.goto(artifact_url(seeded, "train.py"))
        await page.locator(".preview .source .hljs-keyword").first.wait_for()
        assert await page.locator(".preview .source").get_attribute("data-language") == "python"
        gutter = await page.locator(".preview .gutter").inner_text()
        assert gutter.split() == ["1", "2", "3", "4", "5"]
        assert await page.locator(".preview .hljs-title").first.inner_text() == "main"

        await page.goto(artifact_url(seeded, "train.log"))
        await page.locator(".preview .source").wait_for()
        assert (await page.locator(".preview .gutter").inner_text()).split()[-1] == "40"

        await page.goto(artifact_url(seeded, "big.log"))  # 340 KiB: the first 256 KiB
        await page.locator(".preview .source").wait_for()
        await page.get_by_text("Showing the first 256 KiB of 340 KiB").wait_for()
        last = (await page.locator(".preview .gutter").inner_text()).split()[-1]
        shown = (await page.locator(".preview .code").inner_text()).splitlines()
        assert int(last) == len(shown) < 12_000
        assert shown[-1] == f"{len(shown):07d} a line of a long log"  # no line cut short

        await page.goto(artifact_url(seeded, "table.csv"))
        await page.locator(".preview table").wait_for()
        assert await page.locator(".preview th").all_inner_texts() == ["epoch", "loss"]
        assert await page.locator(".preview tbody tr").count() == 3

        await page.goto(artifact_url(seeded, "data.json"))
        await page.locator(".preview .source[data-language='json']").wait_for()
        shown = await page.locator(".preview .code").inner_text()
        assert '"big": 12345678901234567890' in shown  # pretty-printed, digits kept
        assert shown.count("\n") >= 6

        await page.goto(artifact_url(seeded, "page.html"))
        frame_element = page.locator(".preview iframe.html-preview")
        await frame_element.wait_for()
        assert await frame_element.get_attribute("sandbox") == ""
        frame = page.frame_locator(".preview iframe.html-preview")
        assert await frame.locator("h1").inner_text() == "Summary"
        await page.get_by_role("button", name="Source").click()
        await page.locator(".preview .source[data-language='xml']").wait_for()

        await page.goto(artifact_url(seeded, "logo.svg"))
        await page.locator(".preview img.svg").wait_for()
        await until(page, "document.querySelector('.preview img.svg').naturalWidth === 40")

        await page.goto(artifact_url(seeded, "conf.xml"))
        await page.locator(".preview .source[data-language='xml']").wait_for()
        assert await page.locator(".preview iframe, .preview img").count() == 0
        await no_violations(page)


async def test_the_artifact_page_shows_every_field(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    resp = await gateway.http.get(
        f"/v1/projects/{seeded.project}/artifacts/{seeded.ids['report.md']}", headers=AUTH
    )
    artifact = await resp.json()
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(artifact_url(seeded, "report.md"))
        fields = page.locator("dl.fields")
        await fields.wait_for()
        text = await fields.inner_text()
        for value in (
            artifact["name"],
            artifact["mime"],
            artifact["sha256"],
            f"{artifact['size']} bytes",
            artifact["lineage"]["step_id"],
            artifact["lineage"]["job_id"],
            artifact["lineage"]["worker_session_id"],
            artifact["created_by"],
            "Charts and notes.",
        ):
            assert value in text, value
        run_link = fields.get_by_role("link", name=seeded.run).first
        assert (
            await run_link.get_attribute("href")
            == f"/ui/projects/{seeded.project}/runs/{seeded.run}"
        )
        await fields.get_by_role("link", name=seeded.session).click()
        await page.get_by_role("heading", name=f"Session {seeded.session}").wait_for()


async def test_derived_from_shows_linked_names_and_the_id_of_what_cannot_be_read(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    """Sources by name, each linked: a run artifact, a deleted one (its tombstone
    still names it) and one the viewer may not read (another person's), which
    keeps its id."""
    p = seeded.project
    alice = {"Authorization": f"Bearer {principal_token('user:alice')}"}
    private = await publish_file(gateway, p, alice, "alice-notes.txt", b"mine\n", "text/plain")
    gone = await publish_file(gateway, p, AUTH, "scratch.txt", b"scratch\n", "text/plain")
    sources = [seeded.ids["plot.png"], gone, private]
    derived = await publish_file(
        gateway, p, AUTH, "summary.txt", b"summary\n", "text/plain",
        derived_from=json.dumps(sources),
    )  # fmt: skip
    resp = await gateway.http.delete(f"/v1/projects/{p}/artifacts/{gone}", headers=AUTH)
    assert resp.status == 204
    # the owner of the derived artifact, without artifacts:admin: alice's is not readable
    viewer = principal_token("user:admin", "artifacts:read")
    async with Page(browser, gateway, viewer) as page:
        await page.goto(f"/ui/projects/{p}/artifacts/{derived}")
        derived_list = page.locator("dl.fields ul.derived")
        await derived_list.locator("a .name", has_text="plot.png").wait_for()
        await derived_list.locator("a .name", has_text="scratch.txt").wait_for()
        await until(
            page,
            f"document.querySelector(\"ul.derived a[data-id='{private}']\").title !== ''",
        )
        links = await derived_list.locator("a").evaluate_all(
            "as => as.map(a => [a.textContent, a.getAttribute('href')])"
        )
        assert links == [
            ["plot.png", f"/ui/projects/{p}/artifacts/{seeded.ids['plot.png']}"],
            ["scratch.txt", f"/ui/projects/{p}/artifacts/{gone}"],
            [private, f"/ui/projects/{p}/artifacts/{private}"],
        ], links
        items = await derived_list.locator("li").all_inner_texts()
        assert "(deleted)" in items[1] and "(deleted)" not in items[0]
        assert [
            r for r in await page.locator("a").all_inner_texts() if r == "alice-notes.txt"
        ] == []
        await derived_list.get_by_role("link", name="plot.png").click()
        await page.locator("h1.artifact-name", has_text="plot.png").wait_for()
        await no_violations(page)


async def test_download_gives_the_exact_bytes(
    browser: Any, gateway: Gateway, seeded: Seeded, tmp_path: Path
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        for name in ("plot.png", "page.html"):
            await page.goto(artifact_url(seeded, name))
            await page.locator(".preview").wait_for()
            async with page.expect_download() as info:
                await page.get_by_role("button", name="Download").click()
            download = await info.value
            saved = tmp_path / name
            await download.save_as(saved)
            assert (
                hashlib.sha256(saved.read_bytes()).digest()
                == hashlib.sha256(seeded.bodies[name]).digest()
            )


async def test_copy_link_mints_a_signed_url_with_the_chosen_expiry(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    async with Page(browser, gateway, READER_TOKEN) as page:
        await page.context.grant_permissions(
            ["clipboard-read", "clipboard-write"], origin=gateway.base
        )
        await page.goto(artifact_url(seeded, "plot.png"))
        await page.locator(".preview img.full").wait_for()  # its preview minted a URL too
        await page.get_by_label("Link expires after").select_option(label="1 hour")
        async with page.expect_response(lambda r: r.url.endswith("/signed-url")) as minted:
            await page.get_by_role("button", name="Copy link").click()
        request = (await minted.value).request
        assert json.loads(request.post_data) == {"expires_in": 3600}
        await page.get_by_text("Link copied").wait_for()
        url = await page.evaluate("navigator.clipboard.readText()")
        assert url == await page.get_by_label("Signed link").input_value()
        assert url.startswith(f"{gateway.base}/v1/projects/{seeded.project}/artifacts/")
        async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == PLOT
        # a reader may not delete: no button
        assert await page.get_by_role("button", name="Delete").count() == 0


async def test_delete_asks_first_and_leaves_a_tombstone(
    browser: Any, gateway: Gateway, seeded: Seeded
) -> None:
    victim = await publish_file(
        gateway, seeded.project, AUTH, "delete-me.txt", b"bye\n", "text/plain"
    )
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{seeded.project}/artifacts/{victim}")
        await page.locator(".preview .source").wait_for()
        await page.get_by_role("button", name="Delete").click()
        dialog = page.locator("dialog.confirm")
        await dialog.get_by_role("button", name="Cancel").click()
        resp = await gateway.http.get(
            f"/v1/projects/{seeded.project}/artifacts/{victim}", headers=AUTH
        )
        assert (await resp.json())["state"] == "available"
        await page.get_by_role("button", name="Delete").click()
        await dialog.get_by_role("button", name="Delete").click()
        await page.get_by_text("This artifact was deleted").wait_for()
        resp = await gateway.http.get(
            f"/v1/projects/{seeded.project}/artifacts/{victim}", headers=AUTH
        )
        assert (await resp.json())["state"] == "deleted"
        await no_violations(page)


async def test_screenshots_of_the_gallery_and_an_artifact(
    browser: Any, gateway: Gateway, seeded: Seeded, tmp_path: Path
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{seeded.project}/runs/{seeded.run}")
        await page.locator(".card img").first.wait_for()  # a thumbnail decoded
        gallery = tmp_path / "ui-gallery.png"
        await page.screenshot(path=gallery)
        await page.goto(artifact_url(seeded, "report.md"))
        await page.locator(".preview article.markdown h1").wait_for()
        artifact = tmp_path / "ui-artifact.png"
        await page.screenshot(path=artifact, full_page=True)
    for shot in (gallery, artifact):
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 10_000


# --- hostile artifacts ------------------------------------------------------------


def hostile_js(beacon: Beacon, tag: str) -> str:
    """Script that sets a window flag and calls the beacon, written without '/' or
    '\\' (a name keeps only its last path component)."""
    return (
        f"window.__pwned=['{tag}'];var s=String.fromCharCode(47);"
        f"fetch('http:'+s+s+'127.0.0.1:{beacon.port}'+s+'{tag}')"
    )


@dataclass
class Hostile:
    project: str
    ids: dict[str, str]
    payloads: dict[str, bytes]


@pytest.fixture(scope="module")
async def hostile(gateway: Gateway, beacon: Beacon) -> Hostile:
    project = "hostile-" + secrets.token_hex(4)
    js = hostile_js
    script = lambda tag: f"<script>{js(beacon, tag)}</script>".encode()  # noqa: E731
    payloads = {
        "name": f'<img src=x onerror="{js(beacon, "name")}">'.encode(),
        "markdown": (
            b"# Notes\n\n"
            + script("md-script")
            + b"\n\n"
            + f'<img src=x onerror="{js(beacon, "md-img")}">\n\n'.encode()
            + b"[click me](javascript:window.__pwned=['md-link'])\n\n"
            + b"[data link](data:text/html,<script>alert(1)</script>)\n\n"
            + f"![remote]({beacon.url('md-remote-image')})\n".encode()
        ),
        "html": b"<!DOCTYPE html><html><body><h1>Hi</h1>"
        + script("html-script")
        + f'<img src=x onerror="{js(beacon, "html-img")}">'.encode()
        + f'<img src="{beacon.url("html-remote")}">'.encode()
        + b"</body></html>",
        "svg": (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20" '
            f'onload="{js(beacon, "svg-onload")}"><script>{js(beacon, "svg-script")}</script>'
            '<rect width="20" height="20"/></svg>'
        ).encode(),
        "html-as-png": b"<!DOCTYPE html><html><body>"
        + script("png-script")
        + f'<img src="{beacon.url("png-remote")}"></body></html>'.encode(),
    }
    claim = await new_claim(gateway.http, project, run_id="run_hostile", step_id="attack")
    ids = {}
    ids["name"] = await publish_file(
        gateway,
        project,
        lease(claim),
        "plain.txt",
        b"plain\n",
        "text/plain",
        name=payloads["name"].decode(),  # a form field, sent as it is (a filename is quoted)
        description=f'<b onmouseover="{js(beacon, "description")}">bold?</b>',
        metadata=json.dumps(
            {"note": "</script><script>window.__pwned=['metadata']</script>", "x": "<img src=x>"}
        ),
    )
    ids["markdown"] = await publish_file(
        gateway, project, lease(claim), "evil.md", payloads["markdown"], "text/markdown"
    )
    ids["html"] = await publish_file(
        gateway, project, lease(claim), "evil.html", payloads["html"], "text/html"
    )
    ids["svg"] = await publish_file(
        gateway, project, lease(claim), "evil.svg", payloads["svg"], "image/svg+xml"
    )
    ids["html-as-png"] = await publish_file(
        gateway, project, lease(claim), "photo.png", payloads["html-as-png"], "image/png"
    )
    return Hostile(project, ids, payloads)


async def assert_silent(page: Any, beacon: Beacon) -> None:
    await asyncio.sleep(0.5)  # let anything that would run, run
    flags = []
    for frame in page.frames:
        with contextlib.suppress(Exception):  # a frame that cannot be evaluated set nothing
            flags.append((frame.url, await frame.evaluate("window.__pwned")))
    assert flags and all(flag is None for _, flag in flags), flags
    assert beacon.hits == [], beacon.hits


async def test_control_the_payloads_run_where_nothing_defends(
    browser: Any, beacon: Beacon, hostile: Hostile
) -> None:
    """The same payloads, rendered the naive way on a page without CSP: the beacon hears
    each one, so its silence elsewhere means something."""
    controls = beacon.controls
    page_js = f"""
      import {{ marked }} from '/vendor/marked-18.2.1/marked.esm.js';
      const payloads = {json.dumps({k: v.decode() for k, v in hostile.payloads.items()})};
      document.getElementById('name').innerHTML = payloads.name;
      document.getElementById('md').innerHTML = marked.parse(payloads.markdown);
      const frame = document.createElement('iframe');
      frame.setAttribute('sandbox', 'allow-scripts');
      frame.srcdoc = payloads.html;
      document.body.append(frame);
    """
    controls["/control.html"] = (
        b"<!DOCTYPE html><html><body><div id=name></div><div id=md></div>"
        b'<script type="module" src="/control.js"></script></body></html>',
        "text/html",
    )
    controls["/control.js"] = (page_js.encode(), "text/javascript")
    controls["/control.svg"] = (hostile.payloads["svg"], "image/svg+xml")
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{beacon.port}/control.html")
        async with asyncio.timeout(TIMEOUT / 1000):
            while "/md-img" not in beacon.hits:
                await asyncio.sleep(0.05)
        await page.goto(f"http://127.0.0.1:{beacon.port}/control.svg")
        await asyncio.sleep(1.0)
    finally:
        await context.close()
    heard = set(beacon.hits)
    beacon.hits.clear()
    assert {"/name", "/md-img", "/md-remote-image", "/html-script", "/html-img"} <= heard, heard
    assert {"/html-remote", "/svg-script"} <= heard, heard


async def test_hostile_names_descriptions_and_metadata_are_text(
    browser: Any, gateway: Gateway, beacon: Beacon, hostile: Hostile
) -> None:
    name = hostile.payloads["name"].decode()
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{hostile.project}")
        card = page.locator(f".card[data-id='{hostile.ids['name']}'] .card-name")
        await card.wait_for()
        assert await card.inner_text() == name
        assert await page.locator("img[src='x']").count() == 0
        await page.goto(f"/ui/projects/{hostile.project}/artifacts/{hostile.ids['name']}")
        await page.locator("h1.artifact-name").wait_for()
        assert await page.locator("h1.artifact-name").inner_text() == name
        fields = await page.locator("dl.fields").inner_text()
        assert "</script><script>window.__pwned=['metadata']</script>" in fields
        assert "bold?</b>" in fields
        assert await page.locator("img[src='x'], b[onmouseover], script:not([src])").count() == 0
        assert await page.evaluate("document.title") == f"{name} · Artifacts"
        await assert_silent(page, beacon)


async def test_hostile_markdown_renders_without_script_or_dangerous_links(
    browser: Any, gateway: Gateway, beacon: Beacon, hostile: Hostile
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{hostile.project}/artifacts/{hostile.ids['markdown']}")
        article = page.locator(".preview article.markdown")
        await article.locator("h1").wait_for()
        text = await article.inner_text()
        assert "<script>" in text and "onerror" in text  # raw HTML shown as text
        assert await article.locator("script, iframe, object, embed, [onerror]").count() == 0
        links = await article.locator("a").evaluate_all(
            "as => as.map(a => [a.textContent, a.getAttribute('href')])"
        )
        assert ["click me", None] in links and ["data link", None] in links
        images = await article.locator("img").evaluate_all("is => is.map(i => i.src)")
        assert images == [""]  # the remote image lost its source
        await assert_silent(page, beacon)


async def test_hostile_html_is_sandboxed_and_runs_nothing(
    browser: Any, gateway: Gateway, beacon: Beacon, hostile: Hostile
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{hostile.project}/artifacts/{hostile.ids['html']}")
        frame_element = page.locator(".preview iframe.html-preview")
        await frame_element.wait_for()
        assert await frame_element.get_attribute("sandbox") == ""
        assert (
            await page.frame_locator(".preview iframe.html-preview").locator("h1").inner_text()
            == "Hi"
        )
        await assert_silent(page, beacon)
        await page.get_by_role("button", name="Source").click()
        await page.locator(".preview .source").wait_for()
        assert "<script>" in await page.locator(".preview .code").inner_text()
        await assert_silent(page, beacon)


async def test_hostile_svg_is_an_image_that_runs_nothing(
    browser: Any, gateway: Gateway, beacon: Beacon, hostile: Hostile
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{hostile.project}/artifacts/{hostile.ids['svg']}")
        await page.locator(".preview img.svg").wait_for()
        await until(page, "document.querySelector('.preview img.svg').naturalWidth === 20")
        await page.goto(f"/ui/projects/{hostile.project}?type=image")
        await page.locator(f".card[data-id='{hostile.ids['svg']}'] .thumb img").wait_for()
        await assert_silent(page, beacon)


async def test_html_named_png_is_not_shown_as_an_image_or_rendered(
    browser: Any, gateway: Gateway, beacon: Beacon, hostile: Hostile
) -> None:
    async with Page(browser, gateway, ADMIN_TOKEN) as page:
        await page.goto(f"/ui/projects/{hostile.project}/artifacts/{hostile.ids['html-as-png']}")
        await page.get_by_text("serves this file as a download only").wait_for()
        await page.locator(".preview .source").wait_for()
        assert "<script>" in await page.locator(".preview .code").inner_text()
        assert await page.locator(".preview img, .preview iframe").count() == 0
        await page.goto(f"/ui/projects/{hostile.project}")
        thumb = page.locator(f".card[data-id='{hostile.ids['html-as-png']}'] .thumb")
        await thumb.wait_for()
        await until(
            page,
            f"document.querySelector(\".card[data-id='{hostile.ids['html-as-png']}'] .thumb\")"
            ".classList.contains('no-thumb')",
        )
        assert await thumb.locator("img").count() == 0
        await assert_silent(page, beacon)
