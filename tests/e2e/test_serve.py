"""``artifact-gateway serve`` as operators run it: logs, workers, metrics, drain, gc."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.backends import s3_settings
from gateway.devstack import free_port
from storage import S3ObjectStore
from tests.conftest import TEST_JWT_SECRET, TEST_URL_KEY, gateway_env, make_config
from tests.helpers import READER, SCHEDULER

pytestmark = pytest.mark.timeout(180)
MiB = 1024 * 1024


class Gateway:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.base = f"http://127.0.0.1:{port}"

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log.read_text().splitlines():
            line = raw.strip()
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines


@contextmanager
def serve(backends, tmp_path: Path, *, workers: int = 1, **env: str) -> Iterator[Gateway]:
    port = free_port()
    log = tmp_path / f"gateway-{port}.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS"))}
    environ |= gateway_env(backends) | {"GATEWAY_PORT": str(port), "GATEWAY_DB_POOL_MAX": "5"}
    environ |= env
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--workers", str(workers)],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    gateway = Gateway(proc, port, log)
    try:
        _wait_ready(gateway)
        yield gateway
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _wait_ready(gateway: Gateway) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert gateway.proc.poll() is None, gateway.log.read_text()[-2000:]
        try:
            with urllib.request.urlopen(gateway.base + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("gateway did not become ready")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def claim(http: aiohttp.ClientSession, base: str, project: str) -> dict[str, Any]:
    body = {
        "run_id": "r",
        "step_id": "s",
        "job_id": f"j{time.time_ns()}",
        "attempt": 1,
        "worker_session_id": "w",
    }
    async with http.post(
        f"{base}/v1/projects/{project}/claims", json=body, headers=SCHEDULER
    ) as resp:
        assert resp.status == 201
        result: dict[str, Any] = await resp.json()
        return result


def form(data: Any, name: str = "f.bin") -> aiohttp.FormData:
    fd = aiohttp.FormData(default_to_multipart=True)
    fd.add_field("file", data, filename=name, content_type="application/octet-stream")
    return fd


async def test_logs_are_json_with_request_context_and_no_secrets(
    backends, tmp_path, project, http
) -> None:
    with serve(backends, tmp_path) as gw:
        lease = await claim(http, gw.base, project)
        token = lease["lease_token"]
        async with http.post(
            f"{gw.base}/v1/projects/{project}/artifacts",
            data=form(b"hello"),
            headers={"X-Mobius-Lease-Token": token, "X-Request-ID": "trace-123"},
        ) as resp:
            assert resp.status == 201
            assert resp.headers["X-Request-ID"] == "trace-123"
            artifact = await resp.json()
        url = f"{gw.base}/v1/projects/{project}/artifacts/{artifact['id']}"
        async with http.post(url + "/signed-url", headers=READER) as resp:
            signed = await resp.json()
        async with http.get(gw.base + signed["url"]) as resp:
            assert resp.status == 200
        async with http.get(gw.base + signed["url"].replace("sig=", "sig=x")) as resp:
            assert resp.status == 403
        async with http.post(
            f"{gw.base}/v1/projects/{project}/artifacts",
            data=form(b"x"),
            headers={"X-Mobius-Lease-Token": token + "tampered"},
        ) as resp:
            assert resp.status == 401
    text = gw.log.read_text()
    sig = signed["url"].split("sig=")[1]
    for secret in (
        token,
        sig,
        READER["Authorization"].split()[1],
        SCHEDULER["Authorization"].split()[1],
        TEST_JWT_SECRET,
        TEST_URL_KEY,
    ):
        assert secret not in text
    lines = gw.log_lines()
    access = [line for line in lines if line.get("event") == "http.request"]
    publish = next(a for a in access if a.get("request_id") == "trace-123")
    assert publish["route"] == "/v1/projects/{project}/artifacts"
    assert publish["status"] == 201 and publish["project"] == project
    assert publish["artifact_id"] == artifact["id"]
    assert publish["lease_id"] == lease["lease_id"]
    assert publish["duration_ms"] >= 0 and publish["bytes_in"] > 0
    events = {line.get("event") for line in lines}
    assert {
        "artifact.published",
        "signed_url.minted",
        "signed_url.redeemed",
        "lease.rejected",
    } <= events


async def test_library_logs_are_json_lines_at_the_configured_level(
    backends, tmp_path, project, http
) -> None:
    """At GATEWAY_LOG_LEVEL=debug the libraries' records (asyncio's) are JSON lines
    naming their logger; the S3 client's debug records (signed headers, bodies) are not
    logged; nothing but JSON lines reaches stderr."""
    with serve(backends, tmp_path, GATEWAY_LOG_LEVEL="debug") as gw:
        lease = await claim(http, gw.base, project)
        async with http.post(
            f"{gw.base}/v1/projects/{project}/artifacts",
            data=form(b"hello"),
            headers={"X-Mobius-Lease-Token": lease["lease_token"]},
        ) as resp:
            assert resp.status == 201
    text = gw.log.read_text()
    assert lease["lease_token"] not in text
    for raw in text.splitlines():
        if raw.strip():
            json.loads(raw)  # every line is one JSON object
    lines = gw.log_lines()
    selector = [line for line in lines if line.get("logger") == "asyncio"]
    assert any(line["event"].startswith("Using selector") for line in selector), selector
    assert all(line["level"] == "debug" for line in selector)
    assert not [
        line
        for line in lines
        if str(line.get("logger", "")).startswith(("botocore", "aiobotocore"))
        and line["level"] == "debug"
    ]
    own = [line for line in lines if line.get("event") == "http.request"]
    assert own and all(line["logger"] == "gateway.http" for line in own)


def _worker_pids(gw: Gateway) -> list[int]:
    return [line["pid"] for line in gw.log_lines() if line.get("event") == "gateway.listening"]


async def _both_workers_listening(gw: Gateway) -> list[int]:
    deadline = time.monotonic() + 30
    while len(_worker_pids(gw)) < 2:
        assert time.monotonic() < deadline, "two workers never listened"
        await asyncio.sleep(0.2)
    return _worker_pids(gw)[:2]


def scrape(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


async def test_metrics_aggregate_across_workers(backends, tmp_path, project, http) -> None:
    metrics_port = free_port()
    with serve(backends, tmp_path, workers=2, GATEWAY_METRICS_PORT=str(metrics_port)) as gw:
        await _both_workers_listening(gw)  # /readyz answered as soon as one was up
        lease = await claim(http, gw.base, project)
        headers = {"X-Mobius-Lease-Token": lease["lease_token"]}
        n = 24
        for i in range(n):  # new connections, so the kernel spreads them over both workers
            async with (
                aiohttp.ClientSession() as fresh,
                fresh.post(
                    f"{gw.base}/v1/projects/{project}/artifacts",
                    data=form(b"x" * (i + 1)),
                    headers=headers,
                ) as resp,
            ):
                assert resp.status == 201
        async with http.get(f"{gw.base}/metrics") as resp:
            assert resp.status == 404  # metrics live on their own port
        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    families = scrape(text)
    published = sum(
        s.value
        for s in families["artifact_gateway_publishes"].samples
        if s.name.endswith("_total") and s.labels["result"] == "created"
    )
    assert published == n
    requests = [
        s
        for s in families["artifact_gateway_http_requests"].samples
        if s.name.endswith("_total") and s.labels["route"] == "/v1/projects/{project}/artifacts"
    ]
    assert sum(s.value for s in requests) == n
    pids = {line.get("pid") for line in gw.log_lines() if line.get("event") == "gateway.listening"}
    assert len(pids) == 2
    for family in families.values():
        assert family.name.startswith("artifact_gateway_"), family.name
        for sample in family.samples:
            assert project not in str(sample.labels)
            assert "art_" not in str(sample.labels)
    expected = {
        "artifact_gateway_http_request_duration_seconds",
        "artifact_gateway_uploads_in_flight",
        "artifact_gateway_upload_received_bytes",
        "artifact_gateway_upload_stored_bytes",
        "artifact_gateway_upload_duration_seconds",
        "artifact_gateway_upload_size_bytes",
        "artifact_gateway_storage_operation_duration_seconds",
        "artifact_gateway_db_pool_connections",
        "artifact_gateway_db_query_duration_seconds",
        "artifact_gateway_lease_verifications",
        "artifact_gateway_events_emitted",
        "artifact_gateway_build_info",
    }
    assert expected <= set(families)


async def _slow_body(total: int, chunk: int, delay: float) -> AsyncIterator[bytes]:
    block = os.urandom(chunk)
    sent = 0
    while sent < total:
        await asyncio.sleep(delay)
        sent += chunk
        yield block


async def test_sigterm_drains_uploads_in_flight(backends, tmp_path, project, http) -> None:
    with serve(backends, tmp_path, GATEWAY_SHUTDOWN_TIMEOUT_SECONDS="20") as gw:
        lease = await claim(http, gw.base, project)
        upload = asyncio.create_task(
            http.post(
                f"{gw.base}/v1/projects/{project}/artifacts",
                data=form(_slow_body(12 * MiB, MiB, 0.15)),
                headers={"X-Mobius-Lease-Token": lease["lease_token"]},
            )
        )
        await asyncio.sleep(0.6)
        gw.proc.send_signal(signal.SIGTERM)
        resp = await upload
        assert resp.status == 201  # the upload in flight finished during the drain
        await asyncio.to_thread(gw.proc.wait, 30)
        assert gw.proc.returncode == 0
    conn = await asyncpg.connect(backends.database_url)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 1
        )
    finally:
        await conn.close()


async def test_drain_timeout_aborts_cleanly(backends, tmp_path, project, http) -> None:
    with serve(backends, tmp_path, GATEWAY_SHUTDOWN_TIMEOUT_SECONDS="1") as gw:
        lease = await claim(http, gw.base, project)
        upload = asyncio.create_task(
            http.post(
                f"{gw.base}/v1/projects/{project}/artifacts",
                data=form(_slow_body(40 * MiB, MiB, 0.2)),
                headers={"X-Mobius-Lease-Token": lease["lease_token"]},
            )
        )
        await asyncio.sleep(2.5)  # past the first 8 MiB part: a multipart upload is open
        gw.proc.send_signal(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientError):
            resp = await upload
            assert resp.status >= 500
            raise aiohttp.ClientError(resp.status)
        await asyncio.to_thread(gw.proc.wait, 30)
    await _assert_project_empty(backends, project)


async def test_a_second_sigint_stops_the_drain_at_once(backends, tmp_path, project, http) -> None:
    """Ctrl-C drains; Ctrl-C again cancels what is in flight (nothing published)."""
    with serve(backends, tmp_path, GATEWAY_SHUTDOWN_TIMEOUT_SECONDS="60") as gw:
        lease = await claim(http, gw.base, project)
        upload = asyncio.create_task(
            http.post(
                f"{gw.base}/v1/projects/{project}/artifacts",
                data=form(_slow_body(40 * MiB, MiB, 0.2)),
                headers={"X-Mobius-Lease-Token": lease["lease_token"]},
            )
        )
        await asyncio.sleep(2.5)  # past the first part: a multipart upload is open
        gw.proc.send_signal(signal.SIGINT)
        await asyncio.sleep(1.0)
        assert gw.proc.poll() is None  # draining: the upload may still finish
        second = time.monotonic()
        gw.proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(gw.proc.wait, 30)
        assert time.monotonic() - second < 20  # not the 60 s drain
        assert gw.proc.returncode == 0
        with pytest.raises(aiohttp.ClientError):
            resp = await upload
            raise aiohttp.ClientError(resp.status)
        events = [line.get("event") for line in gw.log_lines()]
        assert "gateway.drain_timeout" in events and "gateway.stopped" in events
    await _assert_project_empty(backends, project)


async def test_gateway_port_0_logs_the_port_listened_on(backends, tmp_path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS"))}
    environ |= gateway_env(backends) | {"GATEWAY_PORT": "0"}
    log = tmp_path / "port0.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--workers", "1"],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    gateway = Gateway(proc, 0, log)
    try:
        deadline = time.monotonic() + 60
        listening: list[dict[str, Any]] = []
        while not listening:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
            listening = [
                line for line in gateway.log_lines() if line.get("event") == "gateway.listening"
            ]
        port = listening[0]["port"]
        assert port > 0
        gateway.base = f"http://127.0.0.1:{port}"
        _wait_ready(gateway)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(40)


async def _assert_project_empty(backends, project: str) -> None:
    conn = await asyncpg.connect(backends.database_url)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 0
        )
        assert (
            await conn.fetchval("SELECT count(*) FROM pending_uploads WHERE project_id=$1", project)
            == 0
        )
    finally:
        await conn.close()
    async with S3ObjectStore.connect(s3_settings(make_config(backends))) as store:
        assert await store.list_incomplete_uploads(f"projects/{project}/") == []
        assert [o async for o in store.list_objects(f"projects/{project}/")] == []


async def test_gc_cleans_up_after_a_killed_gateway(backends, tmp_path, project, http) -> None:
    with serve(backends, tmp_path) as gw:
        lease = await claim(http, gw.base, project)
        upload = asyncio.create_task(
            http.post(
                f"{gw.base}/v1/projects/{project}/artifacts",
                data=form(_slow_body(64 * MiB, MiB, 0.05)),
                headers={"X-Mobius-Lease-Token": lease["lease_token"]},
            )
        )
        conn = await asyncpg.connect(backends.database_url)
        try:
            for _ in range(200):  # until the multipart upload is recorded as pending
                await asyncio.sleep(0.05)
                if await conn.fetchval(
                    "SELECT count(*) FROM pending_uploads WHERE project_id=$1", project
                ):
                    break
            else:
                raise AssertionError("the upload never became a pending multipart upload")
        finally:
            await conn.close()
        gw.proc.kill()  # SIGKILL: no cleanup runs
        gw.proc.wait(10)
        with pytest.raises(aiohttp.ClientError):
            await upload
    async with S3ObjectStore.connect(s3_settings(make_config(backends))) as store:
        assert await store.list_incomplete_uploads(f"projects/{project}/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= gateway_env(backends)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "gc", "--grace-seconds", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["aborted_uploads"] + report["cleared_pending"] >= 1
    assert report["failed"] == 0
    await _assert_project_empty(backends, project)


async def test_slow_drip_headers_are_cut_off(backends, tmp_path, project) -> None:
    with serve(backends, tmp_path, GATEWAY_KEEPALIVE_TIMEOUT_SECONDS="1") as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        head = (
            f"POST /v1/projects/{project}/artifacts HTTP/1.1\r\nHost: x\r\n".encode()
            + b"X-Drip: a\r\n" * 200
        )
        started = time.monotonic()
        closed = False
        try:
            for byte in head:  # one byte every 50 ms: never a complete request head
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)
                if reader.at_eof() or time.monotonic() - started > 15:
                    break
            closed = reader.at_eof() or await reader.read() == b""
        except ConnectionError:
            closed = True
        finally:
            writer.close()
        assert closed
        assert time.monotonic() - started < 5
        async with aiohttp.ClientSession() as http, http.get(gw.base + "/readyz") as resp:
            assert resp.status == 200


def _serve_again(backends, port: int, workers: int, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS"))}
    environ |= gateway_env(backends) | {"GATEWAY_PORT": str(port)} | env
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--workers", str(workers)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_taken_port_fails_with_one_line(backends, tmp_path, http, workers) -> None:
    metrics_port = free_port()
    with serve(backends, tmp_path, GATEWAY_METRICS_PORT=str(metrics_port)) as gw:
        started = time.monotonic()
        second = _serve_again(backends, gw.port, workers)
        assert time.monotonic() - started < 15
        assert second.returncode == 1
        assert second.stdout == ""
        suggested = re.fullmatch(
            f"artifact-gateway: cannot listen on 127.0.0.1:{gw.port}: address already in use; "
            r"set GATEWAY_PORT=(\d+) \(free now\) or stop what holds it\n",
            second.stderr,
        )
        assert suggested, second.stderr
        assert int(suggested.group(1)) not in (gw.port, metrics_port)
        # the metrics address is bound just as strictly
        second = _serve_again(
            backends, free_port(), workers, GATEWAY_METRICS_PORT=str(metrics_port)
        )
        assert second.returncode == 1
        assert re.fullmatch(
            f"artifact-gateway: cannot listen on 127.0.0.1:{metrics_port}: address already in "
            r"use; set GATEWAY_METRICS_PORT=(\d+) \(free now\) or stop what holds it\n",
            second.stderr,
        ), second.stderr
        # the first gateway alone answers, on every new connection
        for _ in range(8):
            async with aiohttp.ClientSession() as fresh, fresh.get(gw.base + "/readyz") as resp:
                assert resp.status == 200
        listening = [line for line in gw.log_lines() if line.get("event") == "gateway.listening"]
        pids = {line["pid"] for line in listening}
        assert pids == {gw.proc.pid}


async def test_workers_share_one_socket_and_drain(backends, tmp_path, project, http) -> None:
    with serve(backends, tmp_path, workers=2, GATEWAY_SHUTDOWN_TIMEOUT_SECONDS="20") as gw:
        first, second = await _both_workers_listening(gw)
        # one worker drains and exits: the other keeps accepting on the shared socket
        lease = await claim(http, gw.base, project)
        headers = {"X-Mobius-Lease-Token": lease["lease_token"]}
        os.kill(first, signal.SIGTERM)
        await asyncio.sleep(0.5)  # it has closed its copy of the socket
        for _ in range(12):
            async with (
                aiohttp.ClientSession() as fresh,
                fresh.get(gw.base + "/readyz") as resp,
            ):
                assert resp.status == 200
            await asyncio.sleep(0.1)
        # the supervisor restarts it
        deadline = time.monotonic() + 30
        while len(_worker_pids(gw)) < 3:
            assert time.monotonic() < deadline, "the stopped worker was not restarted"
            await asyncio.sleep(0.2)
        assert gw.proc.poll() is None
        # SIGTERM to the supervisor: an upload in flight finishes, then all stop
        upload = asyncio.create_task(
            http.post(
                f"{gw.base}/v1/projects/{project}/artifacts",
                data=form(_slow_body(8 * MiB, MiB, 0.15)),
                headers=headers,
            )
        )
        await asyncio.sleep(0.6)
        gw.proc.send_signal(signal.SIGTERM)
        resp = await upload
        assert resp.status == 201
        await asyncio.to_thread(gw.proc.wait, 40)
        assert gw.proc.returncode == 0
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", gw.port)
    assert second != first


async def test_protocol_errors_are_problems_logged_in_one_line(
    backends, tmp_path, project, http
) -> None:
    """aiohttp's own refusals (a header line too long) answer problem+json, echo
    nothing of the request, and log one JSON line without the token's bytes; a
    JSON answer's access line counts its body bytes."""
    secretish = "eyJ" + "Q" * 9000  # past aiohttp's 8190-byte header line limit
    with serve(backends, tmp_path) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(
            f"GET /v1/projects/{project}/artifacts HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {secretish}.a.b\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"400", head
        assert b"application/problem+json" in head
        assert json.loads(body)["code"] == "invalid_request"
        assert b"QQQQ" not in answer
        async with http.get(f"{gw.base}/v1/projects/{project}/artifacts", headers=READER) as resp:
            listing = await resp.read()
    text = gw.log.read_text()
    assert "QQQQ" not in text
    assert "Traceback" not in text
    for raw in text.splitlines():
        if raw.strip():
            json.loads(raw)  # every line is one JSON object
    lines = gw.log_lines()
    assert any(line.get("event") == "http.protocol_error" for line in lines)
    access = [
        line
        for line in lines
        if line.get("event") == "http.request"
        and line.get("route") == "/v1/projects/{project}/artifacts"
    ]
    assert access[-1]["bytes_out"] == len(listing) > 0
