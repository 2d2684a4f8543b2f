"""The Python client against a real gateway (in-process, real Postgres and SeaweedFS).

Failures are injected by a small aiohttp proxy between the client and the gateway:
it answers 503 after forwarding (a lost answer), cuts a request body or a
response body midway, hangs, or rewrites a header, and records what it saw.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import gateway.client
from gateway.client import (
    ArtifactClient,
    AsyncArtifactClient,
    DigestMismatch,
    NotFound,
    QuotaExceeded,
    Unauthenticated,
    Unavailable,
)
from tests.conftest import principal_token
from tests.helpers import ADMIN, new_claim, quota

pytestmark = pytest.mark.timeout(60)
MiB = 1024 * 1024
READ_TOKEN = principal_token("user:reader", "artifacts:read")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}

Action = Callable[[web.Request, "Proxy"], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body_bytes: int = 0


@dataclass
class Proxy:
    """Forwards to the gateway; ``plan[(method, suffix)]`` lists actions for the next calls."""

    upstream: str
    session: aiohttp.ClientSession
    base: str = ""
    plan: dict[tuple[str, str], list[Action]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def calls(self, method: str, suffix: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.endswith(suffix)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path, dict(request.headers)))
        for (method, suffix), actions in self.plan.items():
            if request.method == method and request.path.endswith(suffix) and actions:
                return await actions.pop(0)(request, self)
        return await relay(request, self)


async def upstream(request: web.Request, proxy: Proxy, body: Any = None) -> aiohttp.ClientResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    if body is None and request.body_exists:
        body = await request.read()
    if isinstance(body, bytes):
        proxy.seen[-1].body_bytes = len(body)
        body = io.BytesIO(body)  # aiohttp warns about sending large raw bytes
    return await proxy.session.request(
        request.method, proxy.upstream + request.path_qs, headers=headers, data=body
    )


def _response_headers(up: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP}


async def relay(request: web.Request, proxy: Proxy, *, cut_after: int | None = None) -> Any:
    """Forward the request and stream the answer back (optionally cutting it short)."""
    up = await upstream(request, proxy)
    try:
        response = web.StreamResponse(status=up.status, headers=_response_headers(up))
        if up.content_length is not None:
            response.content_length = up.content_length
        await response.prepare(request)
        sent = 0
        async for chunk in up.content.iter_any():
            if cut_after is not None and sent + len(chunk) >= cut_after:
                await response.write(chunk[: max(0, cut_after - sent)])
                await asyncio.sleep(0.05)
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-body
                return response
            await response.write(chunk)
            sent += len(chunk)
        await response.write_eof()
        return response
    finally:
        up.release()


async def lost_answer(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """The gateway handles the request, but its answer never reaches the client."""
    up = await upstream(request, proxy)
    await up.read()
    up.release()
    return web.json_response(
        {"code": "unavailable", "status": 503, "title": "Unavailable", "request_id": "p"},
        status=503,
        headers={"Retry-After": "0"},
        content_type="application/problem+json",
    )


async def cut_request(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """Read part of the body, then drop the connection: the gateway never sees it."""
    await request.content.readexactly(256 * 1024)
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=500)


async def hang(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """Swallow the request and never answer (until the test ends)."""
    await request.read()
    await proxy.release.wait()
    return web.Response(status=500)


def cut_response(after: int) -> Action:
    async def action(request: web.Request, proxy: Proxy) -> web.StreamResponse:
        result: web.StreamResponse = await relay(request, proxy, cut_after=after)
        return result

    return action


async def bad_digest(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    up = await upstream(request, proxy)
    try:
        body = await up.read()
        headers = _response_headers(up)
        headers["Repr-Digest"] = "sha-256=:" + base64.b64encode(b"\0" * 32).decode() + ":"
        return web.Response(status=up.status, body=body, headers=headers)
    finally:
        up.release()


@pytest.fixture
async def proxy(aiohttp_server: Any, client: TestClient) -> AsyncIterator[Proxy]:
    async with aiohttp.ClientSession() as session:
        p = Proxy(upstream=str(client.make_url("")).rstrip("/"), session=session)
        app = web.Application(client_max_size=64 * MiB)
        app.router.add_route("*", "/{tail:.*}", p.handle)
        server = await aiohttp_server(app)
        p.base = str(server.make_url("")).rstrip("/")
        yield p
        p.release.set()


@pytest.fixture
def base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


def fast(url: str, **kw: Any) -> AsyncArtifactClient:
    kw.setdefault("backoff_base", 0.01)
    return AsyncArtifactClient(url, env={}, **kw)


async def worker(client: TestClient, project: str, url: str, **kw: Any) -> AsyncArtifactClient:
    """A worker's client: a lease token (the project comes from it) and a read token."""
    claim = await new_claim(client, project)
    return fast(url, lease_token=claim["lease_token"], token=READ_TOKEN, **kw)


async def test_publish_from_path_and_file_object_with_lineage(
    client: TestClient, project: str, base: str, tmp_path: Path
) -> None:
    claim = await new_claim(client, project)
    report = tmp_path / "report.md"
    report.write_bytes(b"# nightly\n" * 1000)
    async with fast(base, lease_token=claim["lease_token"], token=READ_TOKEN) as c:
        assert c.project == project  # read from the lease token's prj claim
        first = await c.publish(report, metadata={"suite": "nightly"}, description="the report")
        assert first.name == "report.md" and first.mime == "text/markdown"
        assert first.size == 10_000
        assert first.sha256 == hashlib.sha256(report.read_bytes()).hexdigest()
        buffer = io.BytesIO(b"col\n1\n")
        second = await c.publish(buffer, name="tablé.csv", derived_from=[first])
        assert second.name == "tablé.csv" and second.mime == "text/csv" and second.size == 6

        artifact = await c.get(second.id)
        assert artifact.derived_from == (first.id,)
        assert artifact.lineage is not None
        assert artifact.lineage.run_id == claim["request"]["run_id"]
        assert artifact.owner.kind == "run"
        assert artifact.ref == second
        assert (await c.get(first.id)).metadata == {"suite": "nightly"}
        with pytest.raises(NotFound) as info:
            await c.get("art_" + "0" * 26)
        assert info.value.status == 404 and info.value.request_id


async def test_lost_answer_is_retried_with_the_same_key_and_charged_once(
    client: TestClient, project: str, proxy: Proxy, tmp_path: Path
) -> None:
    proxy.plan[("POST", "/artifacts")] = [lost_answer]
    data = os.urandom(2 * MiB + 123)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    async with await worker(client, project, proxy.base) as c:
        ref = await c.publish(path)
        listed = [a async for a in c.list()]
    posts = proxy.calls("POST", "/artifacts")
    assert len(posts) == 2
    assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    for post in posts:  # Content-Length is sent, and is the size of the body
        assert int(post.headers["Content-Length"]) == post.body_bytes > len(data)
    assert [a.id for a in listed] == [ref.id]
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    state = await quota(client, project)
    assert state["used_bytes"] == len(data) and state["artifact_count"] == 1


async def test_dropped_upload_is_resent_from_the_file_objects_start(
    client: TestClient, project: str, proxy: Proxy
) -> None:
    proxy.plan[("POST", "/artifacts")] = [cut_request]
    data = os.urandom(3 * MiB)
    fileobj = io.BytesIO(b"skip" + data)
    fileobj.seek(4)  # the artifact starts where the file object stands
    async with await worker(client, project, proxy.base) as c:
        ref = await c.publish(fileobj, name="data.bin")
    assert len(proxy.calls("POST", "/artifacts")) == 2
    assert ref.size == len(data) and ref.sha256 == hashlib.sha256(data).hexdigest()
    assert (await quota(client, project))["used_bytes"] == len(data)


async def test_unseekable_stream_is_not_retried_after_bytes_were_sent(
    client: TestClient, project: str, proxy: Proxy
) -> None:
    proxy.plan[("POST", "/artifacts")] = [cut_request]
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with open(write_fd, "wb") as w, contextlib.suppress(BrokenPipeError):
            for _ in range(4):
                w.write(b"x" * MiB)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        with open(read_fd, "rb") as pipe:
            async with await worker(client, project, proxy.base) as c:
                with pytest.raises(Unavailable):
                    await c.publish(pipe, name="stream.bin")
    finally:
        await asyncio.to_thread(writer.join, 10)
    assert len(proxy.calls("POST", "/artifacts")) == 1
    assert (await quota(client, project))["artifact_count"] == 0


async def test_stalled_upload_is_aborted_and_retried(
    client: TestClient, project: str, proxy: Proxy
) -> None:
    proxy.plan[("POST", "/artifacts")] = [hang]
    async with await worker(client, project, proxy.base, stall_timeout=1.0) as c:
        ref = await c.publish(b"stalled once", name="s.txt")
    assert len(proxy.calls("POST", "/artifacts")) == 2
    assert (await quota(client, project))["used_bytes"] == ref.size


async def test_client_errors_are_not_retried(
    client: TestClient, project: str, proxy: Proxy, base: str, tmp_path: Path
) -> None:
    resp = await client.put(
        f"/v1/projects/{project}/quota", json={"limit_bytes": 1000}, headers=ADMIN
    )
    assert resp.status == 200
    async with await worker(client, project, proxy.base) as c:
        with pytest.raises(QuotaExceeded) as info:
            await c.publish(b"x" * 2000, name="big.bin")
    error = info.value
    assert error.code == "quota_exceeded" and error.status == 413
    assert error.request_id and error.detail
    assert len(proxy.calls("POST", "/artifacts")) == 1
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(40 * MiB)  # refused from its Content-Length, before the body is read
    async with await worker(client, project, base) as c:
        with pytest.raises(QuotaExceeded):
            await c.publish(big)
    async with fast(proxy.base, token="not-a-jwt", project=project) as c:
        with pytest.raises(Unauthenticated):
            await c.quota()
    assert len(proxy.calls("GET", "/quota")) == 1


async def test_unreachable_gateway_gives_up_as_unavailable(project: str) -> None:
    from gateway.devstack import free_port

    async with fast(f"http://127.0.0.1:{free_port()}", project=project, retries=2) as c:
        with pytest.raises(Unavailable) as info:
            await c.quota()
    assert "3 attempts" in info.value.detail


async def test_download_resumes_with_range_and_is_exact(
    client: TestClient, project: str, proxy: Proxy, tmp_path: Path
) -> None:
    data = os.urandom(3 * MiB + 17)
    async with await worker(client, project, proxy.base) as c:
        ref = await c.publish(data, name="big.bin")
        proxy.plan[("GET", "/content")] = [cut_response(MiB + 5)]
        seen: list[tuple[int, int | None]] = []
        path = await c.download(ref.id, tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert path == tmp_path / "big.bin"
    assert path.read_bytes() == data
    assert not (tmp_path / ".big.bin.part").exists()
    first, second = proxy.calls("GET", "/content")
    assert "Range" not in first.headers
    offset = int(second.headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= MiB + 5
    assert second.headers["If-Range"] == f'"{ref.sha256}"'
    assert seen[-1] == (len(data), len(data))


async def test_download_refuses_a_wrong_digest(
    client: TestClient, project: str, proxy: Proxy, tmp_path: Path
) -> None:
    async with await worker(client, project, proxy.base) as c:
        ref = await c.publish(b"the real bytes", name="r.txt")
        proxy.plan[("GET", "/content")] = [bad_digest]
        dest = tmp_path / "r.txt"
        with pytest.raises(DigestMismatch) as info:
            await c.download(ref.id, dest)
        assert info.value.code == "digest_mismatch"
        assert not dest.exists()
        assert not (tmp_path / ".r.txt.part").exists()
        assert await c.download(ref.id, dest) == dest  # the honest answer passes
    assert dest.read_bytes() == b"the real bytes"


async def test_download_resumes_a_partial_file_left_by_an_earlier_run(
    client: TestClient, project: str, base: str, tmp_path: Path
) -> None:
    data = os.urandom(MiB)
    async with await worker(client, project, base) as c:
        ref = await c.publish(data, name="d.bin")
        (tmp_path / ".d.bin.part").write_bytes(data[:1000])
        assert (await c.download(ref.id, tmp_path / "d.bin")).read_bytes() == data
        (tmp_path / ".e.bin.part").write_bytes(b"stale bytes of another file")
        assert (await c.download(ref.id, tmp_path / "e.bin")).read_bytes() == data


async def test_list_follows_every_page(client: TestClient, project: str, proxy: Proxy) -> None:
    async with await worker(client, project, proxy.base) as c:
        refs = [await c.publish(f"n{i}".encode(), name=f"n{i}.txt") for i in range(5)]
        listed = [a async for a in c.list(page_size=2)]
        prefixed = [a.name async for a in c.list(name_prefix="n4")]
    assert [a.id for a in listed] == [r.id for r in reversed(refs)]  # newest first
    assert len(proxy.calls("GET", "/artifacts")) == 3 + 1
    assert prefixed == ["n4.txt"]


async def test_events_stream_and_reconnect_with_last_event_id(
    client: TestClient, project: str, proxy: Proxy
) -> None:
    async with await worker(client, project, proxy.base) as c:
        first = await c.publish(b"1", name="one.txt")
        proxy.plan[("GET", "/events")] = [cut_response(1)]  # the first stream drops at once
        received = []
        async with c.events(after=0, type="artifact.created") as stream:
            received.append(await asyncio.wait_for(anext(stream), 10))
            second = await c.publish(b"2", name="two.txt")
            received.append(await asyncio.wait_for(anext(stream), 10))
    assert [(e.type, e.artifact.id) for e in received] == [
        ("artifact.created", first.id),
        ("artifact.created", second.id),
    ]
    assert received[0].seq < received[1].seq
    connections = proxy.calls("GET", "/events")
    assert len(connections) >= 2
    assert connections[0].headers["Last-Event-ID"] == "0"
    assert connections[-1].headers["Last-Event-ID"] in ("0", str(received[0].seq))
    assert connections[0].headers["Accept"] == "text/event-stream"


async def test_signed_url_delete_and_quota(client: TestClient, project: str, base: str) -> None:
    token = principal_token("user:carol", "artifacts:read artifacts:write artifacts:delete")
    async with fast(base, token=token, project=project) as c:
        ref = await c.publish(b"mine", name="mine.txt")
        signed = await c.signed_url(ref.id, expires_in=60)
        assert signed.url.startswith(base + f"/v1/projects/{project}/artifacts/{ref.id}/content?")
        async with aiohttp.ClientSession() as anonymous, anonymous.get(signed.url) as resp:
            assert resp.status == 200 and await resp.read() == b"mine"
        q = await c.quota()
        assert (q.project, q.used_bytes, q.artifact_count) == (project, 4, 1)
        await c.delete(ref.id)
        await c.delete(ref.id)  # deleting twice is fine
        assert (await c.get(ref.id)).deleted
        assert [a.id async for a in c.list(include_deleted=True)] == [ref.id]
        assert [a async for a in c.list()] == []


async def test_sync_client_and_one_liners_read_the_environment(
    client: TestClient, project: str, base: str, tmp_path: Path, monkeypatch: Any
) -> None:
    claim = await new_claim(client, project)
    monkeypatch.setenv("MOBIUS_ARTIFACTS_URL", base)
    monkeypatch.setenv("MOBIUS_LEASE_TOKEN", claim["lease_token"])
    monkeypatch.setenv("MOBIUS_ARTIFACTS_TOKEN", READ_TOKEN)
    monkeypatch.delenv("MOBIUS_PROJECT", raising=False)
    source = tmp_path / "out.txt"
    source.write_text("one-liner\n")

    def blocking() -> None:  # in a thread: the gateway serves on this test's loop
        ref = gateway.client.publish(source, metadata={"k": 1})
        path = gateway.client.download(ref.id, tmp_path / "copy.txt")
        assert path.read_text() == "one-liner\n"
        with ArtifactClient() as sync:
            assert sync.project == project
            assert [a.id for a in sync.list()] == [ref.id]
            assert sync.get(ref.id).metadata == {"k": 1}
            assert sync.quota().artifact_count == 1
            with sync.list(page_size=1) as items:
                assert next(items).id == ref.id

    await asyncio.to_thread(blocking)
