"""``python -m loadtests.ui_load``: how fast the artifact browser shows a large project.

Starts its own Postgres and SeaweedFS and ``artifact-gateway serve`` (as
``loadtests.run`` does), fills one project with ``--artifacts`` artifacts, and
opens the gallery in headless Chromium (Debian's ``chromium``, driven by
Playwright) ``--repeat`` times, each in a fresh browser context (an empty cache).
It reports the time from the start of navigation to the first cards in the page,
read from the page's own clock (``performance.now()`` when the first card is
added), and the time to the first thumbnail decoded.

The project is filled quickly: 28 artifacts of every kind are published through
the API (the newest ones, so the first page is real), the rest are copies of a
real artifact row (new id, name and seq; the same bytes' object is not copied, so
their content is not served) inserted with one SQL statement, each with its
``artifact.created`` event. Bounded: it stops after ``--max-seconds``.

    python -m loadtests.ui_load                        # 10,000 artifacts, 5 loads
    python -m loadtests.ui_load --artifacts 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from gateway.demo import chart
from loadtests.stack import Stack

PROJECT = "ui-load"
FIRST_CARDS = """
window.__marks = {};
new MutationObserver((_, observer) => {
  if (!window.__marks.cards && document.querySelector('.card')) {
    window.__marks.cards = performance.now();
    window.__marks.count = document.querySelectorAll('.card').length;
  }
  const img = document.querySelector('.card .thumb img');
  if (img && img.complete && img.naturalWidth > 0 && !window.__marks.thumb) {
    window.__marks.thumb = performance.now();
  }
  if (window.__marks.cards && window.__marks.thumb) observer.disconnect();
}).observe(document, { childList: true, subtree: true, attributes: true });
"""


def say(text: str) -> None:
    print(f"[ui-load] {text}", file=sys.stderr, flush=True)


def _files(index: int) -> list[tuple[str, bytes, str]]:
    curve = [1 - ((i + index) % 40) / 45 for i in range(40)]
    return [
        (f"plot-{index}.png", chart([curve], 480, 270), "image/png"),
        (f"report-{index}.md", f"# Report {index}\n\nAll good.\n".encode(), "text/markdown"),
        (f"train-{index}.py", b"print('hello')\n", "text/x-python"),
        (f"data-{index}.csv", b"a,b\n1,2\n", "text/csv"),
        (f"metrics-{index}.json", b'{"loss": 0.1}', "application/json"),
        (f"page-{index}.html", b"<!DOCTYPE html><h1>Hi</h1>", "text/html"),
        (f"log-{index}.txt", b"line\n" * 20, "text/plain"),
    ]


async def publish_some(base: str, token: str, rounds: int, tag: str) -> int:
    auth = {"Authorization": f"Bearer {token}"}
    count = 0
    async with aiohttp.ClientSession(base_url=base) as http:
        for index in range(rounds):
            claim_body = {
                "run_id": f"run_{tag}_{index}",
                "step_id": "step",
                "job_id": f"job_{tag}_{index}",
                "attempt": 1,
                "worker_session_id": "ws",
                "session_id": "sess_load",
            }
            async with http.post(
                f"/v1/projects/{PROJECT}/claims", json=claim_body, headers=auth
            ) as resp:
                assert resp.status == 201, await resp.text()
                lease = {"X-Mobius-Lease-Token": (await resp.json())["lease_token"]}
            for name, data, mime in _files(index):
                form = aiohttp.FormData()
                form.add_field("file", data, filename=name, content_type=mime)
                async with http.post(
                    f"/v1/projects/{PROJECT}/artifacts", data=form, headers=lease
                ) as resp:
                    assert resp.status == 201, await resp.text()
                    count += 1
    return count


async def bulk_copies(database_url: str, copies: int) -> None:
    """``copies`` rows copying the oldest published artifact, older than every other."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            # make room below the published ones: their seq moves above every copy's
            shift = copies + 1_000_000
            for table in ("events", "artifacts"):
                await conn.execute(
                    f"UPDATE {table} SET seq = seq + $2 WHERE project_id = $1",
                    PROJECT,
                    shift,
                )
            template = await conn.fetchval(
                "SELECT artifact_id FROM artifacts WHERE project_id = $1 AND mime = 'text/plain'"
                " ORDER BY seq LIMIT 1",
                PROJECT,
            )
            await conn.execute(
                """
                INSERT INTO artifacts (artifact_id, project_id, seq, name, mime, mime_class, size,
                    sha256, sniffed_mime, content_agrees, state, created_at, owner_kind,
                    owner_id, created_by, lease_id, run_id, step_id, job_id, attempt,
                    worker_session_id, session_id, description, metadata, derived_from,
                    object_key, storage_backend)
                SELECT 'art_' || upper(lpad(to_hex(g), 26, '0')), project_id, g,
                    'copy-' || g || '.txt', mime, mime_class, size, sha256, sniffed_mime,
                    content_agrees, state, created_at - make_interval(secs => $2 - g),
                    owner_kind, owner_id, created_by, lease_id, 'run_copy_' || (g / 100),
                    step_id, job_id, attempt, worker_session_id, session_id, description,
                    metadata, derived_from, object_key || '-copy-' || g, storage_backend
                FROM artifacts, generate_series(1, $2) AS g
                WHERE artifact_id = $1
                """,
                template,
                copies,
            )
            await conn.execute(
                """
                INSERT INTO events (project_id, seq, type, artifact_id, payload, created_at)
                SELECT a.project_id, a.seq, 'artifact.created', a.artifact_id,
                    e.payload || jsonb_build_object('id', a.artifact_id, 'name', a.name),
                    a.created_at
                FROM artifacts a, events e
                WHERE a.project_id = $1 AND a.seq <= $3 AND e.project_id = $1
                    AND e.artifact_id = $2 AND e.type = 'artifact.created'
                """,
                PROJECT,
                template,
                copies,
            )
            await conn.execute(
                "UPDATE projects SET artifact_count = artifact_count + $2,"
                " event_seq = (SELECT max(seq) FROM events WHERE project_id = $1)"
                " WHERE project_id = $1",
                PROJECT,
                copies,
            )
        await conn.execute("ANALYZE artifacts")
        await conn.execute("ANALYZE events")
    finally:
        await conn.close()


async def measure(base: str, token: str, repeat: int) -> list[dict[str, Any]]:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is required (scripts/system-deps.sh installs it)")
    loads = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium)
        try:
            for _ in range(repeat + 1):  # the first load warms the gateway, and is not kept
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                await context.add_init_script(FIRST_CARDS)
                page = await context.new_page()
                await page.goto(f"{base}/ui/projects/{PROJECT}#token={token}")
                async with asyncio.timeout(30):
                    while True:
                        marks = await page.evaluate("window.__marks")
                        if marks.get("cards") and marks.get("thumb"):
                            break
                        await asyncio.sleep(0.02)
                loads.append(marks)
                await context.close()
        finally:
            await browser.close()
    return loads[1:]


async def api_page_ms(base: str, token: str, repeat: int) -> list[float]:
    auth = {"Authorization": f"Bearer {token}"}
    times = []
    async with aiohttp.ClientSession(base_url=base) as http:
        for _ in range(repeat):
            started = time.perf_counter()
            async with http.get(f"/v1/projects/{PROJECT}/artifacts", headers=auth) as resp:
                assert resp.status == 200
                await resp.read()
            times.append((time.perf_counter() - started) * 1000)
    return times


async def run(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    say("starting Postgres, SeaweedFS and the gateway")
    await asyncio.to_thread(stack.start_backends)
    gateway = await stack.start_gateway()
    token = stack.token("user:load", ["artifacts:read", "artifacts:write", "claims:write"])
    published = await publish_some(gateway.base_url, token, 2, "old")
    copies = max(0, args.artifacts - 28)
    say(f"inserting {copies} copies")
    await bulk_copies(stack.database_url, copies)
    published += await publish_some(gateway.base_url, token, 2, "new")
    total = published + copies
    say(f"project {PROJECT!r} holds {total} artifacts; loading the gallery {args.repeat} times")
    loads = await measure(gateway.base_url, token, args.repeat)
    api = await api_page_ms(gateway.base_url, token, args.repeat)
    cards = [m["cards"] for m in loads]
    thumbs = [m["thumb"] for m in loads]
    return {
        "artifacts": total,
        "cards_in_first_page": loads[0]["count"],
        "first_cards_ms": {
            "median": round(statistics.median(cards), 1),
            "min": round(min(cards), 1),
            "max": round(max(cards), 1),
            "all": [round(c, 1) for c in cards],
        },
        "first_thumbnail_ms": {
            "median": round(statistics.median(thumbs), 1),
            "max": round(max(thumbs), 1),
        },
        "api_first_page_ms": {"median": round(statistics.median(api), 1)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ui-load-"))
    stack = Stack(root, volume_size_limit_mb=64)

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(args.max_seconds):
            try:
                return await run(args, stack)
            finally:
                if stack.gateway is not None:
                    await stack.gateway.stop()
                    stack.gateway = None

    try:
        result = asyncio.run(bounded())
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
