"""The Python client (``mobius_artifacts``) against a real gateway (in-process, real
Postgres and SeaweedFS).

Failures are injected by a small aiohttp proxy between the client and the gateway:
it answers 503 after forwarding (a lost answer), cuts a request body or a
response body midway, hangs, or rewrites a header, and records what it saw. The
same proxy serves as the forward proxy the environment names, and over TLS with a
certificate of a private CA.
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
import mobius_artifacts
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from mobius_artifacts import (
    ArtifactClient,
    ArtifactTooLarge,
    AsyncArtifactClient,
    DigestMismatch,
    NotFound,
    QuotaExceeded,
    Unauthenticated,
    Unavailable,
)

from gateway.app import create_app
from gateway.config import Config
from tests.conftest import principal_token
from tests.helpers import ADMIN, new_claim, quota, tls_files

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


async def start_proxy(
    aiohttp_server: Any, client: TestClient, session: aiohttp.ClientSession, **server: Any
) -> Proxy:
    p = Proxy(upstream=str(client.make_url("")).rstrip("/"), session=session)
    app = web.Application(client_max_size=64 * MiB)
    app.router.add_route("*", "/{tail:.*}", p.handle)
    started = await aiohttp_server(app, **server)
    p.base = str(started.make_url("")).rstrip("/")
    return p


@pytest.fixture
async def proxy(aiohttp_server: Any, client: TestClient) -> AsyncIterator[Proxy]:
    async with aiohttp.ClientSession() as session:
        p = await start_proxy(aiohttp_server, client, session)
        yield p
        p.release.set()


@pytest.fixture
def base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


def fast(url: str, **kw: Any) -> AsyncArtifactClient:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("env", {})
    return AsyncArtifactClient(url, **kw)


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


async def test_download_to_a_path_ending_with_a_separator_makes_that_directory(
    client: TestClient, project: str, proxy: Proxy, tmp_path: Path
) -> None:
    async with await worker(client, project, proxy.base) as c:
        ref = await c.publish(b"inside\n", name="r.txt")
        path = await c.download(ref.id, f"{tmp_path}/downloads/")
    assert path == tmp_path / "downloads" / "r.txt"
    assert path.read_bytes() == b"inside\n"


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


async def test_events_stream_of_an_expired_token_raises_token_expired(
    aiohttp_client: Any, config: Config, project: str
) -> None:
    """The gateway ends a stream at its token's expiry with a final ``event: error``:
    the client hands out the events before it, then raises Unauthenticated
    (``token_expired``) instead of reconnecting in vain or misreading the frame."""
    gateway = await aiohttp_client(create_app(config.with_overrides(auth_leeway_seconds=0)))
    url = str(gateway.make_url("")).rstrip("/")
    claim = await new_claim(gateway, project)
    token = principal_token("user:brief", "artifacts:read", ttl=2)
    async with fast(url, lease_token=claim["lease_token"], token=token) as c:
        ref = await c.publish(b"1", name="one.txt")
        async with c.events(after=0) as stream:
            assert (await asyncio.wait_for(anext(stream), 10)).artifact.id == ref.id
            with pytest.raises(Unauthenticated) as raised:
                await asyncio.wait_for(anext(stream), 10)
    assert raised.value.code == "token_expired"


async def test_publish_text_artifact_type_and_read_content(
    client: TestClient, project: str, proxy: Proxy
) -> None:
    text = "# Plan\n\nÉtape 1 — measure.\n"
    proxy.plan[("POST", "/artifacts")] = [lost_answer]  # the JSON publish is retried too
    async with await worker(client, project, proxy.base) as c:
        data = await c.publish(b"a,b\n1,2\n", name="data.csv", artifact_type="dataset")
        plan = await c.publish_text(
            "plan.md",
            text,
            description="the plan",
            metadata={"model": "m1"},
            derived_from=[data],
            artifact_type="plan",
        )
        assert (plan.name, plan.mime, plan.size) == ("plan.md", "text/markdown", len(text.encode()))
        assert plan.sha256 == hashlib.sha256(text.encode()).hexdigest()
        notes = await c.publish_text("notes.txt", "plain", mime="text/plain")
        assert notes.mime == "text/plain"

        got = await c.get(plan.id)
        assert (got.artifact_type, got.description, got.derived_from) == (
            "plan",
            "the plan",
            (data.id,),
        )
        assert got.metadata == {"model": "m1"} and got.lineage is not None
        assert (await c.get(data.id)).artifact_type == "dataset"
        assert (await c.get(notes.id)).artifact_type is None
        assert [a.id async for a in c.list(artifact_type="plan")] == [plan.id]
        assert [a.id async for a in c.list(artifact_type="log")] == []

        content = await c.read_content(plan.id)
        assert content.is_text and not content.is_image and content.text() == text
        assert content.artifact == got
        binary = await c.publish(os.urandom(3000), name="blob.bin")
        raw = await c.read_content(binary.id)
        assert not raw.inline and not raw.is_text and len(raw.data) == 3000
        assert hashlib.sha256(raw.data).hexdigest() == binary.sha256
        with pytest.raises(ArtifactTooLarge) as info:
            await c.read_content(binary.id, max_bytes=2999)
        assert info.value.status is None  # refused here, before any byte was fetched

        with pytest.raises(ArtifactTooLarge) as info:  # more than the gateway's JSON limit
            await c.publish_text("big.md", "x" * (MiB + 1))
        assert info.value.status == 413
    posts = proxy.calls("POST", "/artifacts")
    assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    texts = [p for p in posts if p.headers["Content-Type"] == "application/json"]
    assert len(texts) == 3  # plan, notes, big
    for post in texts[:2]:
        assert int(post.headers["Content-Length"]) == post.body_bytes
    state = await quota(client, project)
    assert state["artifact_count"] == 4  # the lost answer's publish was charged once


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
        ref = mobius_artifacts.publish(source, metadata={"k": 1})
        path = mobius_artifacts.download(ref.id, tmp_path / "copy.txt")
        assert path.read_text() == "one-liner\n"
        with ArtifactClient() as sync:
            assert sync.project == project
            assert [a.id for a in sync.list()] == [ref.id]
            assert sync.get(ref.id).metadata == {"k": 1}
            assert sync.quota().artifact_count == 1
            with sync.list(page_size=1) as items:
                assert next(items).id == ref.id
            note = sync.publish_text("note.md", "sync", artifact_type="note")
            assert [a.id for a in sync.list(artifact_type="note")] == [note.id]
            assert sync.read_content(note.id).text() == "sync"

    await asyncio.to_thread(blocking)


async def test_forward_proxy_from_the_environment(
    client: TestClient, project: str, proxy: Proxy, base: str, tmp_path: Path, monkeypatch: Any
) -> None:
    # A ~/.netrc "default" entry names every host; the client must not let it clash
    # with its bearer token (as aiohttp's trust_env would).
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password something\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    claim = await new_claim(client, project)
    proxied = proxy.base.replace("http://", "http://bob:s%40cret@")
    env = {"HTTP_PROXY": proxied, "NO_PROXY": "gateway.invalid"}
    async with fast(base, lease_token=claim["lease_token"], token=READ_TOKEN, env=env) as c:
        ref = await c.publish(b"through the proxy", name="p.txt")
        assert (await c.quota()).artifact_count == 1
        async with c.events(after=0) as stream:
            assert (await asyncio.wait_for(anext(stream), 10)).artifact.id == ref.id
        path = await c.download(ref.id, tmp_path)
    assert path.read_bytes() == b"through the proxy"
    seen = [(s.method, s.path.rsplit("/", 1)[-1]) for s in proxy.seen]
    assert seen == [
        ("POST", "artifacts"),
        ("GET", "quota"),
        ("GET", "events"),
        ("GET", ref.id),
        ("GET", "content"),
    ]
    expected = "Basic " + base64.b64encode(b"bob:s@cret").decode()
    assert {s.headers.get("Proxy-Authorization") for s in proxy.seen} == {expected}
    assert all(s.headers["Host"] == base.removeprefix("http://") for s in proxy.seen)

    # NO_PROXY names the gateway: straight to it
    env["NO_PROXY"] = "example.com, 127.0.0.1"
    async with fast(base, token=READ_TOKEN, project=project, env=env) as c:
        assert (await c.quota()).artifact_count == 1
    assert len(proxy.seen) == len(seen)


@dataclass
class Tunnel:
    port: int = 0
    requests: list[tuple[str, str | None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def tunnel_proxy() -> AsyncIterator[Tunnel]:
    """A forward proxy that only opens CONNECT tunnels, recording each request line."""
    tunnel = Tunnel()
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in head[1:] if line)
        tunnel.requests.append((head[0], headers.get("Proxy-Authorization")))
        host, port = head[0].split()[1].rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            tasks.add(asyncio.ensure_future(task))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    tunnel.port = server.sockets[0].getsockname()[1]
    try:
        yield tunnel
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def test_tls_with_a_private_ca_bundle(
    aiohttp_server: Any, client: TestClient, project: str, tmp_path: Path
) -> None:
    import ssl

    ca, cert, key = tls_files(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    claim = await new_claim(client, project)
    async with aiohttp.ClientSession() as session:
        front = await start_proxy(aiohttp_server, client, session, ssl=server_tls)
        assert front.base.startswith("https://127.0.0.1:")
        worker_options = {"lease_token": claim["lease_token"], "token": READ_TOKEN}
        async with fast(front.base, ca_bundle=ca, **worker_options) as c:
            ref = await c.publish(b"over tls", name="t.txt")
            path = await c.download(ref.id, tmp_path / "t.txt")
            signed = await c.signed_url(ref.id)
        assert path.read_bytes() == b"over tls"
        assert signed.url.startswith(front.base + "/")
        env = {"MOBIUS_ARTIFACTS_CA_BUNDLE": str(ca)}
        async with fast(front.base, env=env, **worker_options) as c:
            assert (await c.quota()).artifact_count == 1
        # through an HTTPS_PROXY: a CONNECT tunnel, with the proxy's credentials on it
        async with tunnel_proxy() as tunnel:
            env = {"HTTPS_PROXY": f"http://bob:s%40cret@127.0.0.1:{tunnel.port}"}
            async with fast(front.base, ca_bundle=ca, env=env, **worker_options) as c:
                assert (await c.quota()).artifact_count == 1
        authority = front.base.removeprefix("https://")
        assert tunnel.requests == [
            (f"CONNECT {authority} HTTP/1.1", "Basic " + base64.b64encode(b"bob:s@cret").decode())
        ]
        calls = len(front.seen)
        # the system's trust store does not know the private CA: one attempt, no retry
        async with fast(front.base, retries=3, **worker_options) as c:
            with pytest.raises(Unavailable, match="TLS failure") as info:
                await c.quota()
        assert isinstance(info.value.__cause__, aiohttp.ClientSSLError)
        assert len(front.seen) == calls


async def wrong_bytes(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """The content with its last byte changed and no ``Repr-Digest``: only the sha256
    of the whole tells."""
    up = await upstream(request, proxy)
    try:
        body = bytearray(await up.read())
        body[-1] ^= 0xFF
        headers = _response_headers(up)
        headers.pop("Repr-Digest", None)
        return web.Response(status=up.status, body=bytes(body), headers=headers)
    finally:
        up.release()


async def ignoring_range(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    """A hop that drops ``Range``: the whole body comes back with 200."""
    headers = {
        k: v
        for k, v in request.headers.items()
        if k.lower() not in HOP_BY_HOP | {"range", "if-range"}
    }
    up = await proxy.session.request("GET", proxy.upstream + request.path_qs, headers=headers)
    try:
        return web.Response(status=up.status, body=await up.read(), headers=_response_headers(up))
    finally:
        up.release()


async def test_download_to_a_stream_resumes_without_writing_a_byte_twice(
    client: TestClient, project: str, proxy: Proxy
) -> None:
    data = os.urandom(3 * MiB)
    async with await worker(client, project, proxy.base) as c:
        ref = await c.publish(data, name="s.bin")
        # cut mid-body, then resumed with Range (206)
        proxy.plan[("GET", "/content")] = [cut_response(MiB + 17)]
        sink = io.BytesIO()
        artifact = await c.download_to(ref.id, sink)
        assert artifact.id == ref.id and sink.getvalue() == data
        ranges = [s.headers.get("Range") for s in proxy.calls("GET", "/content")]
        assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")
        # cut mid-body, then the whole body again (200): its first bytes are skipped
        proxy.plan[("GET", "/content")] = [cut_response(MiB + 17), ignoring_range]
        sink = io.BytesIO()
        await c.download_to(ref.id, sink)
        assert sink.getvalue() == data


async def test_download_to_a_stream_verifies_the_sha256_at_the_end(
    client: TestClient, project: str, proxy: Proxy
) -> None:
    data = os.urandom(MiB + 5)
    async with await worker(client, project, proxy.base) as c:
        ref = await c.publish(data, name="w.bin")
        proxy.plan[("GET", "/content")] = [wrong_bytes]
        sink = io.BytesIO()
        with pytest.raises(DigestMismatch) as info:
            await c.download_to(ref.id, sink)
        assert info.value.code == "digest_mismatch" and ref.id in info.value.detail
        assert len(sink.getvalue()) == len(data)  # written, then found wrong
        proxy.plan[("GET", "/content")] = [bad_digest]  # a wrong Repr-Digest: nothing written
        sink = io.BytesIO()
        with pytest.raises(DigestMismatch):
            await c.download_to(ref.id, sink)
        assert sink.getvalue() == b""
