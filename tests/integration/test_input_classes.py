"""Regression tests of four classes of client input, each over every route it reaches:

- a request ``Content-Encoding`` (decodable or not) is a 415 with
  ``Accept-Encoding: identity``, never decoded and never a 500; a body whose
  framing does not parse is a 400;
- numbers in headers and queries are 1 to 19 ASCII digits: a ``Range`` of 5,000
  digits, Unicode digits in ``Range``, ``exp``, ``limit``, ``after``,
  ``Last-Event-ID`` … are refused (or, for ``Range``, ignored as RFC 9110 says);
- ids and slugs are matched whole: a trailing newline (``%0A``) is a 4xx and
  nothing is committed;
- signed-URL mints are rate-limited per principal (429 ``rate_limited``).
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from gateway.api import ROUTES
from gateway.api.protocol import GatewayRunner
from gateway.app import create_app
from gateway.backends import s3_settings
from storage import S3ObjectStore
from tests.conftest import bearer, make_config, principal_token
from tests.helpers import ADMIN, READER, SCHEDULER, lease, new_claim, publish, quota
from tests.integration.test_hostile import raw_request

ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x660 + d) for d in range(10)))
CONTENT = b"0123456789abcdef" * 64  # 1 KiB


@pytest.fixture
async def store(config) -> AsyncIterator[S3ObjectStore]:
    async with S3ObjectStore.connect(s3_settings(config)) as s:
        yield s


class GatewayTestServer(TestServer):
    """The test server with the gateway's own connection layer, as ``serve`` runs it."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GatewayRunner(self.app, **kwargs)


@pytest.fixture
async def served(aiohttp_client, config) -> TestClient:
    return await aiohttp_client(GatewayTestServer(create_app(config)))


async def problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    body = await resp.text()
    assert resp.status == status, body
    assert resp.headers["Content-Type"].startswith("application/problem+json"), body
    if resp.method == "HEAD":
        return {}
    data: dict[str, Any] = json.loads(body)
    assert data["code"] == code, data
    assert data["status"] == status
    return data


async def counts(db: Any, project: str) -> dict[str, Any]:
    """Everything a request could have committed in ``project``."""
    return {
        table: await db.fetchval(f"SELECT count(*) FROM {table} WHERE project_id=$1", project)
        for table in ("artifacts", "job_claims", "signed_url_mints", "events", "pending_uploads")
    } | {
        "used_bytes": await db.fetchval(
            "SELECT used_bytes FROM projects WHERE project_id=$1", project
        ),
        "limit_bytes": await db.fetchval(
            "SELECT limit_bytes FROM projects WHERE project_id=$1", project
        ),
    }


async def objects(store: S3ObjectStore, project: str) -> list[str]:
    return [o.key async for o in store.list_objects(f"projects/{project}/")]


def _path(template: str, **values: str) -> str:
    return re.sub(r"\{([a-z_]+)\}", lambda m: values[m.group(1)], template)


async def _seed(client: TestClient, project: str) -> dict[str, str]:
    claim = await new_claim(client, project)
    resp = await publish(client, project, lease(claim), CONTENT)
    assert resp.status == 201, await resp.text()
    return {
        "project": project,
        "artifact_id": (await resp.json())["id"],
        "lease_id": claim["lease_id"],
        "lease_token": claim["lease_token"],
        "slug": "quota-exceeded",
    }


# --- 2. request content codings ---------------------------------------------------------


def _claim_body() -> bytes:
    return json.dumps(
        {
            "run_id": "run_ce",
            "step_id": "s",
            "job_id": "job_" + secrets.token_hex(3),
            "attempt": 1,
            "worker_session_id": "ws_ce",
        }
    ).encode()


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "ceB" + secrets.token_hex(4)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _uploads(seed: dict[str, str]) -> dict[str, tuple[str, str, dict[str, str], bytes]]:
    """Every route that reads a request body: method, path, headers, a valid identity body."""
    project, art, lse = seed["project"], seed["artifact_id"], seed["lease_id"]
    base = f"/v1/projects/{project}"
    form_body, form_type = _multipart(b"x" * 60_000)
    json_type = {"Content-Type": "application/json"}
    return {
        "claim": ("POST", f"{base}/claims", SCHEDULER | json_type, _claim_body()),
        "renew": (
            "POST",
            f"{base}/claims/{lse}/renew",
            SCHEDULER | json_type,
            b'{"ttl_seconds":60}',
        ),
        "signed-url": (
            "POST",
            f"{base}/artifacts/{art}/signed-url",
            READER | json_type,
            b'{"expires_in":60}',
        ),
        "quota": ("PUT", f"{base}/quota", ADMIN | json_type, b'{"limit_bytes":1048576}'),
        "publish-multipart": (
            "POST",
            f"{base}/artifacts",
            {"X-Mobius-Lease-Token": seed["lease_token"], "Content-Type": form_type},
            form_body,
        ),
        "publish-json": (
            "POST",
            f"{base}/artifacts",
            {"X-Mobius-Lease-Token": seed["lease_token"]} | json_type,
            json.dumps({"name": "t.txt", "content": "x" * 60_000}).encode(),
        ),
    }


CODINGS = {
    "gzip-valid": ("gzip", gzip.compress),
    "gzip-not-gzip": ("gzip", lambda body: body),
    "deflate-valid": ("deflate", zlib.compress),
    "deflate-not-deflate": ("deflate", lambda body: body),
    "br-not-br": ("br", lambda body: body),
    "upper-case": ("GZIP", gzip.compress),
    "a-list": ("identity, gzip", gzip.compress),
    "unknown": ("x-custom", lambda body: body),
}


@pytest.mark.parametrize("coding", sorted(CODINGS))
@pytest.mark.parametrize(
    "route", ["claim", "renew", "signed-url", "quota", "publish-multipart", "publish-json"]
)
async def test_request_content_codings_are_415_and_commit_nothing(
    client: TestClient, project, db, store, route, coding
) -> None:
    seed = await _seed(client, project)
    # 1 MiB limit, 1 KiB used: a 60 KB body that inflated would pass no size check it met.
    resp = await client.put(
        f"/v1/projects/{project}/quota", json={"limit_bytes": 1024 * 1024}, headers=ADMIN
    )
    assert resp.status == 200
    before, stored = await counts(db, project), await objects(store, project)
    method, path, headers, body = _uploads(seed)[route]
    name, encode = CODINGS[coding]
    resp = await client.request(
        method, path, data=encode(body), headers=headers | {"Content-Encoding": name}
    )
    data = await problem(resp, 415, "unsupported_content_encoding")
    assert resp.headers["Accept-Encoding"] == "identity"
    assert "identity" in data["detail"]
    assert await counts(db, project) == before
    assert await objects(store, project) == stored


async def test_a_small_gzip_that_inflates_past_the_quota_is_refused_unread(
    client: TestClient, project, db, store
) -> None:
    """61 KB of gzip that inflates to 63 MiB, into a project with 1 MiB left: 415, nothing
    stored or charged (it used to be decoded silently, past the early quota check)."""
    claim = await new_claim(client, project)
    resp = await client.put(
        f"/v1/projects/{project}/quota", json={"limit_bytes": 1024 * 1024}, headers=ADMIN
    )
    assert resp.status == 200
    head, media_type = _multipart(b"")
    opening, closing = head.split(b"\r\n\r\n", 1)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    parts = [squeeze.compress(opening + b"\r\n\r\n")]
    zeros = bytes(1024 * 1024)
    parts += [squeeze.compress(zeros) for _ in range(63)]
    parts += [squeeze.compress(closing), squeeze.flush()]
    body = b"".join(parts)
    assert len(body) < 100_000
    resp = await client.post(
        f"/v1/projects/{project}/artifacts",
        data=body,
        headers=lease(claim) | {"Content-Type": media_type, "Content-Encoding": "gzip"},
    )
    await problem(resp, 415, "unsupported_content_encoding")
    assert (await quota(client, project))["used_bytes"] == 0
    assert await db.fetchval("SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 0
    assert await objects(store, project) == []


async def test_identity_content_coding_is_accepted(client: TestClient, project) -> None:
    seed = await _seed(client, project)
    for route, (method, path, headers, body) in _uploads(seed).items():
        resp = await client.request(
            method, path, data=body, headers=headers | {"Content-Encoding": "identity"}
        )
        assert resp.status in (200, 201), (route, await resp.text())


async def test_every_route_refuses_an_encoded_body(client: TestClient, project, db) -> None:
    """The class over the route table: whatever the route, a coded body is a 415."""
    seed = await _seed(client, project)
    before = await counts(db, project)
    for method, template, _handler in ROUTES:
        path = _path(template, **seed)
        resp = await client.request(
            method,
            path,
            data=gzip.compress(b"{}"),
            headers=ADMIN | {"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        await problem(resp, 415, "unsupported_content_encoding")
        assert resp.headers["Accept-Encoding"] == "identity", (method, template)
    assert await counts(db, project) == before


@pytest.mark.parametrize("route", ["claim", "renew", "quota", "publish-json", "publish-multipart"])
async def test_a_body_whose_framing_breaks_is_400(
    served: TestClient, project, db, store, route
) -> None:
    """A chunked body with a bad chunk size mid-way: the payload error is a 400, not a 500."""
    client = served
    seed = await _seed(client, project)
    before, stored = await counts(db, project), await objects(store, project)
    method, path, headers, body = _uploads(seed)[route]
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    half = body[: len(body) // 2]
    answer = await raw_request(client, head, f"{len(half):x}\r\n".encode() + half + b"\r\nzz\r\n")
    status = int(answer.split(b" ", 2)[1]) if answer else 0
    assert 400 <= status < 500, answer[:400]
    assert b"application/problem+json" in answer, answer[:400]
    assert await counts(db, project) == before
    assert await objects(store, project) == stored


# --- 3. numbers: bounded ASCII digits ---------------------------------------------------


async def _signed_url(client: TestClient, seed: dict[str, str]) -> str:
    resp = await client.post(
        f"/v1/projects/{seed['project']}/artifacts/{seed['artifact_id']}/signed-url",
        headers=READER,
    )
    assert resp.status == 200, await resp.text()
    url: str = (await resp.json())["url"]
    return url


@pytest.mark.parametrize("signed", [False, True], ids=["bearer", "signed-url"])
@pytest.mark.parametrize(
    ("range_header", "status", "first", "last"),
    [
        ("bytes=" + "9" * 5000 + "-", 416, None, None),
        ("bytes=" + "9" * 20 + "-", 416, None, None),
        ("bytes=0-" + "9" * 5000, 206, 0, len(CONTENT) - 1),
        ("bytes=-" + "9" * 5000, 206, 0, len(CONTENT) - 1),
        ("bytes=10-" + "9" * 19, 206, 10, len(CONTENT) - 1),
        ("bytes=\u0661-\u0662", 200, None, None),
        ("bytes=1-\u0662", 200, None, None),
        ("bytes=-\u0662", 200, None, None),
        ("bytes=\u00b2-", 200, None, None),
        ("bytes=1-2", 206, 1, 2),
    ],
    ids=[
        "first-5000-digits",
        "first-20-digits",
        "last-5000-digits",
        "suffix-5000-digits",
        "last-19-digits",
        "arabic-indic",
        "arabic-indic-last",
        "arabic-indic-suffix",
        "superscript",
        "ascii",
    ],
)
async def test_range_numbers_are_bounded_ascii_digits(
    client: TestClient, project, signed, range_header, status, first, last
) -> None:
    seed = await _seed(client, project)
    url = f"/v1/projects/{project}/artifacts/{seed['artifact_id']}/content"
    headers = {"Range": range_header}
    if signed:
        url = await _signed_url(client, seed)
    else:
        headers |= READER
    resp = await client.get(url, headers=headers)
    if status == 416:
        await problem(resp, 416, "range_not_satisfiable")
        assert resp.headers["Content-Range"] == f"bytes */{len(CONTENT)}"
        return
    assert resp.status == status, await resp.text()
    body = await resp.read()
    if status == 200:
        assert body == CONTENT and "Content-Range" not in resp.headers
    else:
        assert body == CONTENT[first : last + 1]
        assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{len(CONTENT)}"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda exp: exp.translate(ARABIC_INDIC),
        lambda exp: exp[:-1] + "\u0669",
        lambda exp: "0" * 5000 + exp,
        lambda exp: "9" * 5000,
        lambda exp: "+" + exp,
        lambda exp: " " + exp,
        lambda exp: exp + "\n",
    ],
    ids=["arabic-indic", "one-arabic-digit", "zero-padded", "5000-digits", "sign", "space", "lf"],
)
async def test_signed_url_exp_is_ascii_digits(client: TestClient, project, tamper) -> None:
    seed = await _seed(client, project)
    url = await _signed_url(client, seed)
    assert (await client.get(url)).status == 200
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["exp"] = tamper(query["exp"])
    resp = await client.get(parts.path, params=query)
    await problem(resp, 403, "signature_invalid")


QUERY_NUMBERS = ["%D9%A1", "%C2%B2", "%EF%BC%91", "9" * 5000, "1" * 20, "+1", "%201", "1%0A", "0x1"]


@pytest.mark.parametrize("value", QUERY_NUMBERS)
@pytest.mark.parametrize(
    ("route", "name"),
    [
        ("/artifacts", "limit"),
        ("/artifacts", "attempt"),
        ("/events", "after"),
        ("/events", "limit"),
    ],
)
async def test_query_numbers_are_bounded_ascii_digits(
    client: TestClient, project, route, name, value
) -> None:
    resp = await client.get(f"/v1/projects/{project}{route}?{name}={value}", headers=READER)
    await problem(resp, 400, "invalid_request")


@pytest.mark.parametrize("value", ["\u0661", "\u00b2", "9" * 5000, "1" * 20, "+1", "1_0"])
async def test_last_event_id_is_bounded_ascii_digits(client: TestClient, project, value) -> None:
    resp = await client.get(
        f"/v1/projects/{project}/events",
        headers=READER | {"Accept": "text/event-stream", "Last-Event-ID": value},
    )
    await problem(resp, 400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        b'{"limit_bytes": ' + b"9" * 5000 + b"}",
        b'{"limit_bytes": "1024"}',
        b'{"limit_bytes": 1e3}',
        b'{"limit_bytes": true}',
    ],
    ids=["5000-digits", "string", "float", "bool"],
)
async def test_quota_numbers_are_bounded_integers(client: TestClient, project, db, body) -> None:
    await quota(client, project)
    before = await counts(db, project)
    resp = await client.put(
        f"/v1/projects/{project}/quota",
        data=body,
        headers=ADMIN | {"Content-Type": "application/json"},
    )
    await problem(resp, 400, "invalid_request")
    assert await counts(db, project) == before


@pytest.mark.parametrize(
    "length",
    [b"9" * 5000, b"9" * 20, b"\xd9\xa1", b"+1", b"1_0", b"0x10"],
    ids=["5000-digits", "20-digits", "arabic-indic", "sign", "underscore", "hex"],
)
async def test_content_length_is_bounded_ascii_digits(
    served: TestClient, project, db, length
) -> None:
    before = await counts(db, project)
    head = (
        (
            f"POST /v1/projects/{project}/claims HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: {SCHEDULER['Authorization']}\r\nContent-Type: application/json\r\n"
            "Connection: close\r\n"
        ).encode()
        + b"Content-Length: "
        + length
        + b"\r\n\r\n"
    )
    answer = await raw_request(served, head, _claim_body())
    assert answer.startswith(b"HTTP/1.1 400 ") or answer.startswith(b"HTTP/1.0 400 "), answer[:300]
    assert b"application/problem+json" in answer, answer[:300]
    assert await counts(db, project) == before


# --- 4. ids and slugs matched whole -----------------------------------------------------

BAD_PROJECTS = ["demo%0A", "demo%0D", "demo%0D%0A", "%0Ademo", "demo%00", "d%D9%A1"]


@pytest.mark.parametrize("bad", BAD_PROJECTS)
async def test_a_project_id_with_a_trailing_newline_is_400_everywhere(
    client: TestClient, project, db, store, bad
) -> None:
    """Every route with a {project}: 400, and a claim or publish commits nothing."""
    seed = await _seed(client, project)
    claim = await new_claim(client, project)
    phantom = project + bad
    values = seed | {"project": phantom}
    for method, template, _handler in ROUTES:
        if "{project}" not in template:
            continue
        headers = dict(ADMIN)
        body: Any = None
        if template.endswith("/artifacts") and method == "POST":
            headers = lease(claim) | {"Content-Type": "application/json"}
            body = json.dumps({"name": "t.txt", "content": "hi"})
        elif template.endswith("/claims"):
            headers |= {"Content-Type": "application/json"}
            body = _claim_body()
        elif template.endswith("/quota") and method == "PUT":
            body = json.dumps({"limit_bytes": 1})
            headers |= {"Content-Type": "application/json"}
        resp = await client.request(method, _path(template, **values), data=body, headers=headers)
        await problem(resp, 400, "invalid_request")
    decoded = unquote(phantom)
    for table in ("projects", "job_claims", "artifacts", "signed_url_mints", "events"):
        sql = f"SELECT count(*) FROM {table} WHERE project_id=$1"
        assert await db.fetchval(sql, decoded.replace("\x00", "")) == 0, table


@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A", "%00", "%20"])
async def test_artifact_and_lease_ids_are_matched_whole(
    client: TestClient, project, db, suffix
) -> None:
    seed = await _seed(client, project)
    before = await counts(db, project)
    values = seed | {
        "artifact_id": seed["artifact_id"] + suffix,
        "lease_id": seed["lease_id"] + suffix,
    }
    checked = 0
    for method, template, _handler in ROUTES:
        if "{artifact_id}" not in template and "{lease_id}" not in template:
            continue
        headers = ADMIN | {"Content-Type": "application/json"}
        resp = await client.request(method, _path(template, **values), data=b"{}", headers=headers)
        await problem(resp, 404, "not_found")
        checked += 1
    assert checked >= 8
    assert await counts(db, project) == before


@pytest.mark.parametrize("value", ["report\n", "report\r\n", "report\x00", "\nreport", "répört"])
async def test_artifact_type_is_matched_whole(
    client: TestClient, project, db, store, value
) -> None:
    claim = await new_claim(client, project)
    resp = await publish(client, project, lease(claim), artifact_type=value)
    assert resp.status == 400, await resp.text()
    resp = await client.post(
        f"/v1/projects/{project}/artifacts",
        json={"name": "t.txt", "content": "hi", "artifact_type": value},
        headers=lease(claim),
    )
    await problem(resp, 400, "invalid_request")
    resp = await client.get(
        f"/v1/projects/{project}/artifacts", params={"artifact_type": value}, headers=READER
    )
    await problem(resp, 400, "invalid_request")
    assert await db.fetchval("SELECT count(*) FROM artifacts WHERE project_id=$1", project) == 0
    assert await objects(store, project) == []


async def test_derived_from_ids_are_matched_whole(client: TestClient, project, db) -> None:
    seed = await _seed(client, project)
    claim = await new_claim(client, project)
    before = await counts(db, project)
    resp = await client.post(
        f"/v1/projects/{project}/artifacts",
        json={"name": "t.txt", "content": "hi", "derived_from": [seed["artifact_id"] + "\n"]},
        headers=lease(claim),
    )
    await problem(resp, 400, "invalid_request")
    assert await counts(db, project) == before


@pytest.mark.parametrize(
    "field", ["run_id", "step_id", "job_id", "worker_session_id", "session_id"]
)
async def test_claim_fields_with_a_trailing_newline_are_400(
    client: TestClient, project, db, field
) -> None:
    body = json.loads(_claim_body()) | {field: "value\n"}
    resp = await client.post(f"/v1/projects/{project}/claims", json=body, headers=SCHEDULER)
    await problem(resp, 400, "invalid_request")
    assert await db.fetchval("SELECT count(*) FROM job_claims WHERE project_id=$1", project) == 0


# --- 8. signed-URL mints are rate-limited per principal ---------------------------------


async def test_signed_url_mints_are_rate_limited_per_principal(
    aiohttp_client, backends, project, db
) -> None:
    config = make_config(backends, signed_url_mints_per_minute=60, signed_url_mint_burst=3)
    client = await aiohttp_client(create_app(config))
    seed = await _seed(client, project)
    path = f"/v1/projects/{project}/artifacts/{seed['artifact_id']}/signed-url"
    carol = bearer(principal_token("user:carol", "artifacts:read"))
    dave = bearer(principal_token("user:dave", "artifacts:read"))
    for expires_in in (60, 61, 62):  # distinct URLs: one audit row each
        resp = await client.post(path, json={"expires_in": expires_in}, headers=carol)
        assert resp.status == 200, await resp.text()
    refused = await client.post(path, json={"expires_in": 63}, headers=carol)
    data = await problem(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"].isascii()
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "3" in data["detail"] and "60" in data["detail"]
    # Another principal has a bucket of its own.
    assert (await client.post(path, headers=dave)).status == 200
    minted = await db.fetch(
        "SELECT principal, count(*) AS n FROM signed_url_mints WHERE project_id=$1 GROUP BY 1",
        project,
    )
    assert {row["principal"]: row["n"] for row in minted} == {"user:carol": 3, "user:dave": 1}


async def test_signed_url_mints_unlimited_when_disabled(aiohttp_client, backends, project) -> None:
    config = make_config(backends, signed_url_mints_per_minute=0, signed_url_mint_burst=1)
    client = await aiohttp_client(create_app(config))
    seed = await _seed(client, project)
    path = f"/v1/projects/{project}/artifacts/{seed['artifact_id']}/signed-url"
    for _ in range(5):
        assert (await client.post(path, headers=READER)).status == 200
