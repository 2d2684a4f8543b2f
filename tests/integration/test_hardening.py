"""Regression tests of the second hardening round: each class of input a red team
or a first-time user broke gets its documented 4xx, stores nothing, and leaves
the read paths serving."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from gateway.api.state import STORE
from gateway.app import create_app
from gateway.backends import s3_settings
from gateway.jsonio import MAX_JSON_DEPTH
from storage import S3ObjectStore
from tests.conftest import TEST_JWT_SECRET, bearer, make_config, principal_token
from tests.helpers import (
    ADMIN,
    READER,
    SCHEDULER,
    ServerThread,
    lease,
    new_claim,
    publish,
    quota,
)
from tests.integration.test_hostile import raw_request, status_of

MiB = 1024 * 1024
ALICE = bearer(principal_token("user:alice", "artifacts:read artifacts:write artifacts:delete"))
BOB = bearer(principal_token("user:bob", "artifacts:read artifacts:write"))


@pytest.fixture
async def store(config) -> AsyncIterator[S3ObjectStore]:
    async with S3ObjectStore.connect(s3_settings(config)) as s:
        yield s


async def assert_nothing_stored(store: S3ObjectStore, db: Any, project: str) -> None:
    assert await db.fetchval("SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 0
    assert [o.key async for o in store.list_objects(f"projects/{project}/")] == []
    used = await db.fetchval("SELECT used_bytes FROM projects WHERE project_id=$1", project)
    assert used in (None, 0)


async def problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    body = await resp.text()
    assert resp.status == status, body
    assert resp.headers["Content-Type"].startswith("application/problem+json"), body
    data: dict[str, Any] = json.loads(body)
    assert data["code"] == code, data
    return data


def nested(depth: int) -> str:
    """A JSON object ``depth`` levels deep: {"a": {"a": … {} …}}."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


# --- 1. JSON nesting: refused on the way in, harmless on the way out -----------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 970, 2500])
async def test_deep_metadata_is_refused(client: TestClient, project, store, db, depth) -> None:
    claim = await new_claim(client, project)
    resp = await publish(client, project, lease(claim), metadata=nested(depth))
    data = await problem(resp, 400, "invalid_request")
    assert "deeper" in data["detail"]
    await assert_nothing_stored(store, db, project)


async def test_metadata_at_the_depth_limit_is_accepted(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    resp = await publish(client, project, lease(claim), metadata=nested(MAX_JSON_DEPTH))
    assert resp.status == 201, await resp.text()


async def test_deep_derived_from_is_refused(client: TestClient, project, store, db) -> None:
    claim = await new_claim(client, project)
    deep = "[" * 4000 + "]" * 4000  # within the part's byte cap: refused for its depth
    resp = await publish(client, project, lease(claim), derived_from=deep)
    await problem(resp, 400, "invalid_request")
    await assert_nothing_stored(store, db, project)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000])
async def test_deep_json_bodies_are_refused(client: TestClient, project, depth) -> None:
    claim = await new_claim(client, project)
    ref = await (await publish(client, project, lease(claim))).json()
    deep = nested(depth)
    for method, path, headers in [
        ("POST", f"/v1/projects/{project}/claims", SCHEDULER),
        ("POST", f"/v1/projects/{project}/claims/{claim['lease_id']}/renew", SCHEDULER),
        ("PUT", f"/v1/projects/{project}/quota", ADMIN),
        ("POST", f"/v1/projects/{project}/artifacts/{ref['id']}/signed-url", ADMIN),
    ]:
        resp = await client.request(
            method, path, data=deep, headers={**headers, "Content-Type": "application/json"}
        )
        await problem(resp, 400, "invalid_request")


async def test_reads_survive_a_stored_row_too_deep_to_serve(
    client: TestClient, project, db
) -> None:
    """A row written before the limits (here: by SQL, deeper than Python's recursion
    limit lets json encode or decode) never fails a page or a stream."""
    claim = await new_claim(client, project)
    odd = await (await publish(client, project, lease(claim), filename="odd.txt")).json()
    fine = await (await publish(client, project, lease(claim), filename="fine.txt")).json()
    await db.execute(
        "UPDATE artifacts SET metadata = $2::jsonb WHERE artifact_id = $1", odd["id"], nested(2000)
    )
    listed = await client.get(f"/v1/projects/{project}/artifacts", headers=READER)
    assert listed.status == 200, await listed.text()
    items = {item["id"]: item for item in (await listed.json())["items"]}
    assert items[odd["id"]]["metadata"] == {}
    assert items[odd["id"]]["metadata_omitted"] == "unreadable"
    assert "metadata_omitted" not in items[fine["id"]]
    one = await client.get(f"/v1/projects/{project}/artifacts/{odd['id']}", headers=READER)
    assert one.status == 200
    # Deleting copies the metadata into artifact.deleted: the feed must still serve it.
    await db.execute(
        "UPDATE artifacts SET metadata = $2::jsonb WHERE artifact_id = $1", odd["id"], "{}"
    )
    await db.execute(
        "UPDATE events SET payload = jsonb_set(payload, '{metadata}', $2::jsonb) "
        "WHERE artifact_id = $1",
        odd["id"],
        nested(2000),
    )
    deleted = await client.delete(f"/v1/projects/{project}/artifacts/{odd['id']}", headers=ADMIN)
    assert deleted.status == 204
    page = await client.get(f"/v1/projects/{project}/events", headers=READER)
    assert page.status == 200, await page.text()
    kinds = [(e["type"], e["artifact"]["id"]) for e in (await page.json())["items"]]
    assert ("artifact.created", fine["id"]) in kinds
    assert ("artifact.deleted", odd["id"]) in kinds
    stream = await client.get(
        f"/v1/projects/{project}/events",
        headers={**READER, "Accept": "text/event-stream"},
    )
    seen: list[str] = []
    async with asyncio.timeout(10):
        while len(seen) < 3:
            line = (await stream.content.readline()).decode()
            if line.startswith("event: "):
                seen.append(line.removeprefix("event: ").strip())
    stream.close()
    assert seen == ["artifact.created", "artifact.created", "artifact.deleted"]


# --- 4. 5xx that must be 4xx -----------------------------------------------------------


@pytest.mark.parametrize("header", ["Authorization: Bearer", "X-Mobius-Lease-Token:"])
async def test_credentials_that_are_not_text_are_401(client: TestClient, project, header) -> None:
    head = (
        (
            f"GET /v1/projects/{project}/artifacts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        ).encode()
        + header.encode()
        + b" \xff\xfe\xe9t\xe9.abc.def\r\n\r\n"
    )
    if header.startswith("X-"):
        head = head.replace(b"GET ", b"POST ")
    answer = await raw_request(client, head)
    assert status_of(answer) == 401, answer[:300]
    assert b'"code": "unauthenticated"' in answer


@pytest.mark.parametrize(
    "metadata",
    [
        '{"x": NaN}',
        '{"x": Infinity}',
        '{"x": -Infinity}',
        '{"x": 1e999}',
        '{"x": "a\\u0000b"}',
        '{"\\u0000": 1}',
        '{"x": "\\ud800"}',
        '{"x": ["\\udfff"]}',
    ],
)
async def test_metadata_that_cannot_be_stored_is_400(
    client: TestClient, project, store, db, metadata
) -> None:
    claim = await new_claim(client, project)
    resp = await publish(client, project, lease(claim), metadata=metadata)
    await problem(resp, 400, "invalid_request")
    await assert_nothing_stored(store, db, project)


@pytest.mark.parametrize(
    "field",
    [
        {"description": "a\x00b"},
        {"description": "bell\x07"},
        {"name": "a\x00b.txt"},
        {"derived_from": '["art_\\u0000"]'},
        {"derived_from": '["art_01JD3K7Q9ZB4M2X8N6V5T1R0P\\u0000"]'},
    ],
)
async def test_nul_in_descriptive_parts_is_400(
    client: TestClient, project, store, db, field
) -> None:
    claim = await new_claim(client, project)
    resp = await publish(client, project, lease(claim), **field)
    await problem(resp, 400, "invalid_request")
    await assert_nothing_stored(store, db, project)


async def test_description_keeps_tabs_and_line_breaks(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    ref = await (
        await publish(client, project, lease(claim), description="line 1\r\n\tline 2\n")
    ).json()
    got = await (
        await client.get(f"/v1/projects/{project}/artifacts/{ref['id']}", headers=READER)
    ).json()
    assert got["description"] == "line 1\r\n\tline 2\n"


def _file_part_head(
    project: str, token: str, disposition: bytes, body: bytes, ctype: bytes
) -> bytes:
    boundary = b"b0undaryX"
    payload = (
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="file"; '
        + disposition
        + b"\r\nContent-Type: "
        + ctype
        + b"\r\n\r\n"
        + body
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )
    head = (
        f"POST /v1/projects/{project}/artifacts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"X-Mobius-Lease-Token: {token}\r\n"
        f"Content-Type: multipart/form-data; boundary=b0undaryX\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    return head + payload


async def test_filename_that_is_not_utf8_is_400(client: TestClient, project, store, db) -> None:
    claim = await new_claim(client, project)
    request = _file_part_head(
        project, claim["lease_token"], b'filename="r\xe9sum\xe9.txt"', b"hi", b"text/plain"
    )
    answer = await raw_request(client, request)
    assert status_of(answer) == 400, answer[:300]
    assert b"not UTF-8" in answer
    await assert_nothing_stored(store, db, project)


@pytest.mark.parametrize(
    "query",
    ["limit=%C2%B2", "attempt=%C2%B2", "limit=%D9%A3", "cursor=djE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5"],
)
async def test_unicode_digits_and_huge_cursors_are_400(client: TestClient, project, query) -> None:
    resp = await client.get(f"/v1/projects/{project}/artifacts?{query}", headers=READER)
    await problem(resp, 400, "invalid_request")


@pytest.mark.parametrize("query", ["after=%C2%B2", "limit=%C2%B2", "after=99999999999999999999"])
async def test_events_unicode_digits_are_400(client: TestClient, project, query) -> None:
    resp = await client.get(f"/v1/projects/{project}/events?{query}", headers=READER)
    await problem(resp, 400, "invalid_request")


async def test_nul_in_a_lease_id_path_is_404(client: TestClient, project) -> None:
    for method, suffix in [("POST", "/renew"), ("DELETE", "")]:
        resp = await client.request(
            method, f"/v1/projects/{project}/claims/lse_%00x{suffix}", headers=SCHEDULER
        )
        await problem(resp, 404, "not_found")


# --- 5. a client that goes away is not an outage ---------------------------------------


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def served(backends) -> Any:
    """The gateway in a thread, served as `serve` serves it (GatewayRunner)."""
    with ServerThread(create_app(make_config(backends))) as server:
        yield server


async def test_abandoned_publish_and_download_are_client_closed(
    served: ServerThread, client: TestClient, project, store, db
) -> None:
    """As served by `serve` (no handler cancellation: the handler sees the reset)."""
    route_pub = "/v1/projects/{project}/artifacts"
    route_get = "/v1/projects/{project}/artifacts/{artifact_id}/content"
    before_5xx = _sample(
        "artifact_gateway_http_requests_total", route=route_pub, method="POST", status_class="5xx"
    )
    before_closed = _sample("artifact_gateway_publishes_total", result="client_closed")
    claim = await new_claim(client, project)
    server = served
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        (
            f"POST /v1/projects/{project}/artifacts HTTP/1.1\r\nHost: x\r\n"
            f"X-Mobius-Lease-Token: {claim['lease_token']}\r\n"
            "Content-Type: multipart/form-data; boundary=b0undaryX\r\n"
            f"Content-Length: {64 * MiB}\r\n\r\n"
            '--b0undaryX\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + os.urandom(3 * MiB)
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.transport.abort()
    async with asyncio.timeout(10):
        while _sample("artifact_gateway_publishes_total", result="client_closed") == before_closed:
            await asyncio.sleep(0.05)
    assert (
        _sample(
            "artifact_gateway_http_requests_total",
            route=route_pub,
            method="POST",
            status_class="5xx",
        )
        == before_5xx
    )
    await assert_nothing_stored(store, db, project)

    # A download the client stops reading after 100 bytes.
    ref = await (
        await publish(client, project, lease(claim), os.urandom(32 * MiB), filename="big.bin")
    ).json()
    before_get_5xx = _sample(
        "artifact_gateway_http_requests_total", route=route_get, method="GET", status_class="5xx"
    )
    before_get_4xx = _sample(
        "artifact_gateway_http_requests_total", route=route_get, method="GET", status_class="4xx"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    token = principal_token("user:reader", "artifacts:read")
    writer.write(
        f"GET /v1/projects/{project}/artifacts/{ref['id']}/content HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    await reader.readexactly(100)
    writer.transport.abort()
    async with asyncio.timeout(10):
        while (
            _sample(
                "artifact_gateway_http_requests_total",
                route=route_get,
                method="GET",
                status_class="4xx",
            )
            == before_get_4xx
        ):
            await asyncio.sleep(0.05)
    assert (
        _sample(
            "artifact_gateway_http_requests_total",
            route=route_get,
            method="GET",
            status_class="5xx",
        )
        == before_get_5xx
    )


# --- 6. idempotency ----------------------------------------------------------------------


async def test_replay_comes_before_the_quota_check(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    key = {"Idempotency-Key": "k-" + secrets.token_hex(4)}
    first = await publish(client, project, {**lease(claim), **key}, b"x" * 70_000, filename="a.bin")
    assert first.status == 201
    used = (await quota(client, project))["used_bytes"]
    resp = await client.put(
        f"/v1/projects/{project}/quota", json={"limit_bytes": used}, headers=ADMIN
    )
    assert resp.status == 200
    again = await publish(client, project, {**lease(claim), **key}, b"x" * 70_000, filename="a.bin")
    assert again.status == 200, await again.text()
    assert (await again.json())["id"] == (await first.json())["id"]


async def test_replay_of_a_deleted_artifact_is_410(client: TestClient, project) -> None:
    key = {"Idempotency-Key": "k-" + secrets.token_hex(4)}
    ref = await (await publish(client, project, {**ALICE, **key})).json()
    resp = await client.delete(f"/v1/projects/{project}/artifacts/{ref['id']}", headers=ADMIN)
    assert resp.status == 204
    again = await publish(client, project, {**ALICE, **key})
    await problem(again, 410, "artifact_deleted")


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": '{"v": 2}'},
        {"description": "another"},
        {"name": "other.txt"},
        {"content_type": "text/markdown"},
    ],
)
async def test_same_key_different_descriptive_parts_is_409(
    client: TestClient, project, change
) -> None:
    key = {"Idempotency-Key": "k-" + secrets.token_hex(4)}
    base: dict[str, Any] = {"metadata": '{"v": 1}', "description": "one"}
    first = await publish(client, project, {**ALICE, **key}, **base)
    assert first.status == 201
    same = await publish(client, project, {**ALICE, **key}, **base)
    assert same.status == 200
    again = await publish(client, project, {**ALICE, **key}, **{**base, **change})
    await problem(again, 409, "idempotency_conflict")


# --- 7. refusals before the body -----------------------------------------------------------


async def _expect_continue(client: TestClient, head: bytes) -> bytes:
    """Send a head with ``Expect: 100-continue`` and return the first answer line(s)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(4096)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _expect_head(project: str, credential: str, length: int) -> bytes:
    return (
        f"POST /v1/projects/{project}/artifacts HTTP/1.1\r\nHost: x\r\n{credential}\r\n"
        "Content-Type: multipart/form-data; boundary=b0undaryX\r\n"
        f"Expect: 100-continue\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_expect_continue_refusals_come_before_100(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    await client.put(f"/v1/projects/{project}/quota", json={"limit_bytes": MiB}, headers=ADMIN)
    token = f"X-Mobius-Lease-Token: {claim['lease_token']}"
    over_quota = await _expect_continue(client, _expect_head(project, token, 8 * MiB))
    assert over_quota.startswith(b"HTTP/1.1 413"), over_quota[:200]
    assert b"quota_exceeded" in over_quota
    unauthenticated = await _expect_continue(client, _expect_head(project, "X-Nothing: 1", 8 * MiB))
    assert unauthenticated.startswith(b"HTTP/1.1 401"), unauthenticated[:200]
    fits = await _expect_continue(client, _expect_head(project, token, 200_000))
    assert fits.startswith(b"HTTP/1.1 100 Continue"), fits[:200]


async def test_expect_continue_then_the_body_publishes(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    request = _file_part_head(
        project, claim["lease_token"], b'filename="e.txt"', b"hello", b"text/plain"
    )
    head, _, body = request.partition(b"\r\n\r\n")
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + b"\r\nExpect: 100-continue\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 Continue")
            writer.write(body)
            await writer.drain()
            answer = await reader.read(4096)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]


async def test_chunked_body_is_cut_off_at_the_quota_left(
    client: TestClient, project, store, db
) -> None:
    claim = await new_claim(client, project)
    await client.put(f"/v1/projects/{project}/quota", json={"limit_bytes": MiB}, headers=ADMIN)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        (
            f"POST /v1/projects/{project}/artifacts HTTP/1.1\r\nHost: x\r\n"
            f"X-Mobius-Lease-Token: {claim['lease_token']}\r\n"
            "Content-Type: multipart/form-data; boundary=b0undaryX\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
    )

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    writer.write(
        chunk(
            b'--b0undaryX\r\nContent-Disposition: form-data; name="file"; filename="c.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
    )
    sent, answer = 0, b""
    block = chunk(os.urandom(256 * 1024))
    with contextlib.suppress(ConnectionError):
        while sent < 64 * MiB and not answer:
            writer.write(block)
            await writer.drain()
            sent += 256 * 1024
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.01):
                    answer = await reader.read(4096)
    if not answer:
        async with asyncio.timeout(10):
            answer = await reader.read(4096)
    writer.transport.abort()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"quota_exceeded" in answer
    assert sent < 16 * MiB  # cut off near the 1 MiB left, not streamed to the maximum size
    await asyncio.sleep(0.5)
    await assert_nothing_stored(store, db, project)


# --- 8. names as clients send them -------------------------------------------------------


@pytest.mark.parametrize(
    ("disposition", "stored"),
    [
        (b'filename="say %22hi%22.txt"', 'say "hi".txt'),
        (b'filename="C:\\Users\\me\\report.txt"', "report.txt"),
        (b"filename*=UTF-8''r%C3%A9sum%C3%A9.txt", "résumé.txt"),
        (b'filename="x%0D%0AContent-Type: text/html.txt"', None),
        (b'filename="x%0a.txt"', None),
    ],
)
async def test_filenames_as_clients_encode_them(
    client: TestClient, project, disposition, stored
) -> None:
    claim = await new_claim(client, project)
    answer = await raw_request(
        client, _file_part_head(project, claim["lease_token"], disposition, b"hi", b"text/plain")
    )
    if stored is None:
        assert status_of(answer) == 400, answer[:300]
        return
    assert status_of(answer) == 201, answer[:300]
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["name"] == stored


def test_requests_filename_with_quotes_round_trips(backends, project) -> None:
    """The requests library (urllib3) sends '"' as %22; the artifact keeps the quote."""
    import requests

    with ServerThread(create_app(make_config(backends))) as server:
        base = f"http://127.0.0.1:{server.port}"
        resp = requests.post(
            f"{base}/v1/projects/{project}/artifacts",
            files={"file": ('my "best" report.txt', b"hello", "text/plain")},
            headers=ALICE,
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["name"] == 'my "best" report.txt'


@pytest.mark.parametrize("ctype", [b"text/pla\xc3\xadn", b"t\xc3\xa9xt/plain", b"text/", b"/plain"])
async def test_invalid_part_media_type_is_treated_as_absent(
    client: TestClient, project, ctype
) -> None:
    claim = await new_claim(client, project)
    answer = await raw_request(
        client, _file_part_head(project, claim["lease_token"], b'filename="n.csv"', b"a,b\n", ctype)
    )
    assert status_of(answer) == 201, answer[:300]
    ref = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert ref["mime"] == "text/csv"


# --- 9. derived_from sees only what the publisher may read ----------------------------------


async def test_derived_from_cannot_name_unreadable_or_deleted_artifacts(
    client: TestClient, project
) -> None:
    bobs = await (await publish(client, project, BOB, filename="bob.txt")).json()
    alices = await (await publish(client, project, ALICE, filename="alice.txt")).json()
    claim = await new_claim(client, project)
    runs = await (await publish(client, project, lease(claim), filename="run.txt")).json()
    gone = await (await publish(client, project, ALICE, filename="gone.txt")).json()
    assert (
        await client.delete(f"/v1/projects/{project}/artifacts/{gone['id']}", headers=ALICE)
    ).status == 204

    async def derive(headers: dict[str, str], *ids: str) -> Any:
        return await publish(client, project, headers, derived_from=json.dumps(list(ids)))

    private = await problem(await derive(ALICE, bobs["id"]), 400, "invalid_request")
    missing = await problem(
        await derive(ALICE, "art_01JD3K7Q9ZB4M2X8N6V5T1R0PA"), 400, "invalid_request"
    )
    assert private["detail"] == missing["detail"]  # no way to tell the two apart
    await problem(await derive(ALICE, gone["id"]), 400, "invalid_request")
    await problem(await derive(lease(claim), alices["id"]), 400, "invalid_request")
    assert (await derive(ALICE, alices["id"], runs["id"])).status == 201
    assert (await derive(lease(claim), runs["id"])).status == 201
    assert (await derive(ADMIN, bobs["id"])).status == 201


# --- 10. lineage in any X-Mobius- header ------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "X-Mobius-Session-Id",
        "X-Mobius-Worker-Session-Id",
        "X-Mobius-Project-Id",
        "X-Mobius-Lineage",
        "X-Mobius-Owner",
        "X-Mobius-Run",
        "x-mobius-step_id",
    ],
)
async def test_lineage_headers_are_refused(client: TestClient, project, store, db, header) -> None:
    claim = await new_claim(client, project)
    resp = await publish(client, project, {**lease(claim), header: "forged"})
    await problem(resp, 400, "lineage_not_allowed")
    await assert_nothing_stored(store, db, project)


# --- 11. principal token lifetime ------------------------------------------------------------


async def test_overlong_principal_tokens_are_refused(client: TestClient, project) -> None:
    now = int(time.time())
    claims = {
        "sub": "user:alice",
        "scope": "artifacts:read",
        "projects": ["*"],
        "iss": "mobius",
        "aud": "mobius-artifacts",
        "iat": now,
    }
    century = jwt.encode({**claims, "exp": now + 100 * 365 * 86400}, TEST_JWT_SECRET, "HS256")
    resp = await client.get(f"/v1/projects/{project}/artifacts", headers=bearer(century))
    data = await problem(resp, 401, "unauthenticated")
    assert "lifetime" in data["detail"]
    month = jwt.encode({**claims, "exp": now + 30 * 86400}, TEST_JWT_SECRET, "HS256")
    assert (
        await client.get(f"/v1/projects/{project}/artifacts", headers=bearer(month))
    ).status == 200


async def test_max_token_lifetime_is_configurable(aiohttp_client, backends, project) -> None:
    client = await aiohttp_client(create_app(make_config(backends, auth_max_token_ttl_seconds=600)))
    ok = principal_token("user:alice", "artifacts:read", ttl=600)
    too_long = principal_token("user:alice", "artifacts:read", ttl=601)
    assert (await client.get(f"/v1/projects/{project}/artifacts", headers=bearer(ok))).status == 200
    resp = await client.get(f"/v1/projects/{project}/artifacts", headers=bearer(too_long))
    await problem(resp, 401, "unauthenticated")


# --- 12. consistency -----------------------------------------------------------------------


async def test_outsiders_get_the_same_404_everywhere(client: TestClient, project) -> None:
    outsider = bearer(
        principal_token("user:eve", "artifacts:read artifacts:admin", projects=["elsewhere"])
    )
    bodies = []
    for path in ["/artifacts", "/artifacts/quota", "/events", f"/artifacts/art_{'0' * 26}"]:
        resp = await client.get(f"/v1/projects/{project}{path}", headers=outsider)
        data = await problem(resp, 404, "not_found")
        bodies.append((data["title"], data.get("detail")))
    put = await client.put(
        f"/v1/projects/{project}/quota", json={"limit_bytes": 1}, headers=outsider
    )
    data = await problem(put, 404, "not_found")
    bodies.append((data["title"], data.get("detail")))
    assert len(set(bodies)) == 1, bodies


async def test_events_refuse_unknown_parameters(client: TestClient, project) -> None:
    resp = await client.get(f"/v1/projects/{project}/events?afer=3", headers=READER)
    data = await problem(resp, 400, "invalid_request")
    assert "afer" in data["detail"]


async def test_if_range(client: TestClient, project) -> None:
    ref = await (await publish(client, project, ALICE, b"0123456789", filename="d.txt")).json()
    url = f"/v1/projects/{project}/artifacts/{ref['id']}/content"
    etag = f'"{ref["sha256"]}"'
    same = await client.get(url, headers={**ALICE, "Range": "bytes=2-4", "If-Range": etag})
    assert same.status == 206 and await same.read() == b"234"
    for stale in ['"0000"', f"W/{etag}", "Sun, 29 Nov 2026 10:00:00 GMT"]:
        changed = await client.get(url, headers={**ALICE, "Range": "bytes=2-4", "If-Range": stale})
        assert changed.status == 200 and await changed.read() == b"0123456789"


async def test_download_racing_a_delete_is_410(client: TestClient, project) -> None:
    ref = await (await publish(client, project, ALICE, b"racing", filename="r.txt")).json()
    store = client.app[STORE]
    real_open = store.open_range

    async def delete_first(key: str, *args: Any, **kw: Any) -> Any:
        # The delete lands after the row was read and before the object is.
        resp = await client.delete(f"/v1/projects/{project}/artifacts/{ref['id']}", headers=ADMIN)
        assert resp.status == 204
        return await real_open(key, *args, **kw)

    store.open_range = delete_first  # type: ignore[method-assign]
    try:
        resp = await client.get(
            f"/v1/projects/{project}/artifacts/{ref['id']}/content", headers=ALICE
        )
    finally:
        store.open_range = real_open  # type: ignore[method-assign]
    await problem(resp, 410, "artifact_deleted")
