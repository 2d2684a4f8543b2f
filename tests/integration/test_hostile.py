"""Hostile input (OWASP file-upload guidance): each gets its 4xx or a closed connection,
nothing is published, and the gateway stays healthy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time

import jwt
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from tests.conftest import TEST_JWT_SECRET, bearer, make_config, principal_token
from tests.helpers import READER, lease, new_claim, publish


async def raw_request(
    client: TestClient,
    head: bytes,
    body: bytes = b"",
    *,
    drip: float = 0.0,
    read_timeout: float = 20.0,
) -> bytes:
    """Send bytes as they are; return whatever the server answers (b"" if it hangs up)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head)
        if drip:
            for i in range(0, len(body), 16):
                writer.write(body[i : i + 16])
                await writer.drain()
                await asyncio.sleep(drip)
        else:
            writer.write(body)
        await writer.drain()
        try:
            async with asyncio.timeout(read_timeout):
                return await reader.read(65536)
        except (ConnectionError, TimeoutError):
            return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def multipart_head(project: str, token: str, boundary: str, length: int | None) -> bytes:
    lines = [
        f"POST /v1/projects/{project}/artifacts HTTP/1.1",
        "Host: localhost",
        f"X-Mobius-Lease-Token: {token}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        "Connection: close",
    ]
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def file_part(boundary: str, data: bytes, name: str = "f.bin", extra: str = "") -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"{extra}Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


async def assert_healthy_and_empty(client: TestClient, db, project: str) -> None:
    assert (await client.get("/readyz")).status == 200
    assert await db.fetchval("SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 0


async def send(client, claim, project, body: bytes, boundary="XyZ", **kw) -> int | None:
    head = multipart_head(project, claim["lease_token"], boundary, len(body))
    return status_of(await raw_request(client, head, body, **kw))


@pytest.mark.parametrize(
    ("name", "status", "stored"),
    [
        ("../../../etc/passwd", 201, "passwd"),
        ("..\\..\\windows\\win.ini", 201, "win.ini"),
        ("ok\x00.txt", 400, None),
        ("bell\x07.txt", 400, None),
        ("x" * 300, 400, None),
        ("..", 400, None),
    ],
)
async def test_names(client: TestClient, project, name, status, stored) -> None:
    claim = await new_claim(client, project)
    resp = await publish(client, project, lease(claim), b"x", name=name)
    assert resp.status == status, await resp.text()
    if stored:
        assert (await resp.json())["name"] == stored


async def test_crlf_in_part_filename_cannot_inject(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    body = file_part("XyZ", b"data", name='evil"\r\nSet-Cookie: a=b') + b"--XyZ--\r\n"
    answer = await raw_request(
        client, multipart_head(project, claim["lease_token"], "XyZ", len(body)), body
    )
    status = status_of(answer)
    assert status in (201, 400), answer[:200]
    if status == 201:  # the line break ended the header: the name is what came before it
        import json

        ref = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        resp = await client.get(
            f"/v1/projects/{project}/artifacts/{ref['id']}/content", headers=READER
        )
        assert "Set-Cookie" not in resp.headers
        assert "\r" not in resp.headers["Content-Disposition"]
        assert "\n" not in resp.headers["Content-Disposition"]


async def test_huge_part_header(client: TestClient, project, db) -> None:
    claim = await new_claim(client, project)
    body = file_part("XyZ", b"data", extra=f"X-Junk: {'a' * 200_000}\r\n") + b"--XyZ--\r\n"
    assert await send(client, claim, project, body) in (400, 413, None)
    await assert_healthy_and_empty(client, db, project)


async def test_twenty_thousand_parts(client: TestClient, project, db) -> None:
    claim = await new_claim(client, project)
    one = b'--XyZ\r\nContent-Disposition: form-data; name="description"\r\n\r\nx\r\n'
    body = one * 20_000 + b"--XyZ--\r\n"
    assert await send(client, claim, project, body) == 400
    await assert_healthy_and_empty(client, db, project)


async def test_nested_multipart(client: TestClient, project, db) -> None:
    claim = await new_claim(client, project)
    inner = file_part("Inner", b"x") + b"--Inner--\r\n"
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
        b"Content-Type: multipart/mixed; boundary=Inner\r\n\r\n" + inner + b"\r\n--XyZ--\r\n"
    )
    assert await send(client, claim, project, body) == 400
    await assert_healthy_and_empty(client, db, project)


async def test_missing_boundary(client: TestClient, project, db) -> None:
    claim = await new_claim(client, project)
    body = file_part("XyZ", b"x") + b"--XyZ--\r\n"
    head = multipart_head(project, claim["lease_token"], "XyZ", len(body)).replace(
        b"; boundary=XyZ", b""
    )
    assert status_of(await raw_request(client, head, body)) == 400
    await assert_healthy_and_empty(client, db, project)


async def test_content_encoding_part_is_refused(client: TestClient, project, db) -> None:
    claim = await new_claim(client, project)
    body = file_part("XyZ", b"x", extra="Content-Encoding: gzip\r\n") + b"--XyZ--\r\n"
    assert await send(client, claim, project, body) == 400
    await assert_healthy_and_empty(client, db, project)


async def test_boundary_lookalikes_are_stored_byte_for_byte(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    data = (
        b"abc--XyZ--def \n--XyZ\n--XyZ--\r--XyZ\r\n-XyZ\r\n-- XyZ" + os.urandom(1000) + b"--XyZ--"
    )
    body = file_part("XyZ", data) + b"--XyZ--\r\n"
    answer = await raw_request(
        client, multipart_head(project, claim["lease_token"], "XyZ", len(body)), body
    )
    assert status_of(answer) == 201, answer[:300]
    import json

    ref = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert ref["sha256"] == hashlib.sha256(data).hexdigest()
    resp = await client.get(f"/v1/projects/{project}/artifacts/{ref['id']}/content", headers=READER)
    assert await resp.read() == data


async def test_delimiter_followed_by_junk_is_refused_not_misread(
    client: TestClient, project, db
) -> None:
    claim = await new_claim(client, project)
    data = b"first line\r\n--XyZjunk after the delimiter\r\nmore"
    body = file_part("XyZ", data) + b"--XyZ--\r\n"
    assert await send(client, claim, project, body) == 400
    await assert_healthy_and_empty(client, db, project)


async def test_slow_drip_body_is_cut_off(aiohttp_client, backends, project, db) -> None:
    config = make_config(backends, body_idle_timeout_seconds=0.5)
    client = await aiohttp_client(create_app(config))
    claim = await new_claim(client, project)
    body = file_part("XyZ", os.urandom(4096))  # never finished
    head = multipart_head(project, claim["lease_token"], "XyZ", len(body) + 100)
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + body[:200])
        await writer.drain()
        async with asyncio.timeout(15):
            answer = await reader.read(65536)
    finally:
        writer.close()
    assert time.monotonic() - started < 10
    assert status_of(answer) in (400, None)
    await assert_healthy_and_empty(client, db, project)


async def test_megabytes_of_preamble(client: TestClient, project, db) -> None:
    claim = await new_claim(client, project)
    preamble = (b"junk line of preamble " * 3 + b"\r\n") * 50_000  # ~3.4 MB
    body = preamble + file_part("XyZ", b"payload") + b"--XyZ--\r\n"
    status = await send(client, claim, project, body)
    assert status in (201, 400, None)
    assert (await client.get("/readyz")).status == 200


async def test_oversized_token(client: TestClient, project) -> None:
    resp = await client.get(
        f"/v1/projects/{project}/artifacts", headers={"Authorization": "Bearer " + "a" * 7000}
    )
    assert resp.status == 401
    assert (await resp.json())["code"] == "unauthenticated"
    resp = await client.get(
        f"/v1/projects/{project}/artifacts", headers={"Authorization": "Bearer " + "a" * 20000}
    )
    assert resp.status in (400, 401, 431)
    assert (await client.get("/readyz")).status == 200


def forged_token(key: bytes, headers: dict[str, str]) -> str:
    """A well-formed principal token signed with ``key`` and carrying ``headers``."""
    now = int(time.time())
    claims = {
        "sub": "user:x",
        "scope": "artifacts:read",
        "projects": ["*"],
        "iss": "mobius",
        "aud": "mobius-artifacts",
        "iat": now,
        "exp": now + 60,
    }
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


@pytest.mark.parametrize("kid", ["../../../../dev/null", "' OR 1=1 --", "\x00", "a" * 500])
async def test_kid_injection(client: TestClient, project, kid: str) -> None:
    token = forged_token(b"not-the-secret-0123456789abcdef-0123456789", {"kid": kid})
    resp = await client.get(f"/v1/projects/{project}/artifacts", headers=bearer(token))
    assert resp.status == 401


async def test_jku_and_x5u_are_never_fetched(client: TestClient, project) -> None:
    hits: list[bytes] = []

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for header in ("jku", "x5u"):
            forged = forged_token(
                b"attacker-key-0123456789abcdef-0123456789",
                {header: f"http://127.0.0.1:{port}/keys.json", "kid": "attacker"},
            )
            resp = await client.get(f"/v1/projects/{project}/artifacts", headers=bearer(forged))
            assert resp.status == 401
            honest = jwt.encode(
                jwt.decode(principal_token(), options={"verify_signature": False}),
                TEST_JWT_SECRET.encode(),
                algorithm="HS256",
                headers={header: f"http://127.0.0.1:{port}/keys.json"},
            )
            resp = await client.get(f"/v1/projects/{project}/artifacts", headers=bearer(honest))
            assert resp.status == 200  # the header is ignored, never followed
        await asyncio.sleep(0.3)
        assert hits == []
    finally:
        server.close()
        await server.wait_closed()
