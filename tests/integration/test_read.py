"""The read plane: listing, visibility, serving policy, ranges, signed URLs, deletion."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.backends import s3_settings
from gateway.config import SigningKey
from storage import S3ObjectStore
from tests.conftest import bearer, make_config, principal_token
from tests.helpers import ADMIN, READER, lease, new_claim, publish, quota

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
XML = b'<?xml version="1.0"?><root><a>1</a></root>'
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

CSP = (
    "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
    "sandbox; frame-ancestors 'none'"
)
TEXT = "text/plain; charset=utf-8"
OCTET = "application/octet-stream"


async def put(
    client: TestClient, project: str, claim: dict, data: bytes, name: str, mime: str | None = None
) -> dict[str, Any]:
    resp = await publish(client, project, lease(claim), data, filename=name, content_type=mime)
    assert resp.status == 201, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


def content_url(project: str, artifact_id: str) -> str:
    return f"/v1/projects/{project}/artifacts/{artifact_id}/content"


def assert_policy_headers(resp: Any, sha: str) -> None:
    h = resp.headers
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Content-Security-Policy"] == CSP
    assert h["Referrer-Policy"] == "no-referrer"
    assert h["Cross-Origin-Resource-Policy"] == "same-site"
    assert h["Cache-Control"] == "private, no-store"
    assert h["X-Robots-Tag"] == "noindex, nofollow"
    assert h["Accept-Ranges"] == "bytes"
    assert h["ETag"] == f'"{sha}"'
    assert h["Repr-Digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(sha)).decode()}:"
    assert "Set-Cookie" not in h


@pytest.mark.parametrize(
    ("data", "name", "mime", "disposition", "content_type"),
    [
        (PNG, "plot.png", "image/png", "inline", "image/png"),
        (JPEG, "photo.jpg", "image/jpeg", "inline", "image/jpeg"),
        (b"plain words\n", "notes.txt", None, "inline", TEXT),
        (b"# Title\n", "README.md", None, "inline", TEXT),
        (b'{"a": 1}', "data.json", None, "inline", TEXT),
        (b"print('hi')\n", "tool.py", None, "inline", TEXT),
        (HTML, "page.html", "text/html", "attachment", OCTET),
        (SVG, "logo.svg", "image/svg+xml", "attachment", OCTET),
        (XML, "feed.xml", "application/xml", "attachment", OCTET),
        (PDF, "paper.pdf", "application/pdf", "attachment", "application/pdf"),
        (HTML, "fake.png", "image/png", "attachment", OCTET),
        (b"\x00\x01binary", "blob.bin", None, "attachment", OCTET),
    ],
)
async def test_serving_policy(
    client: TestClient, project, data, name, mime, disposition, content_type
) -> None:
    claim = await new_claim(client, project)
    ref = await put(client, project, claim, data, name, mime)
    resp = await client.get(content_url(project, ref["id"]), headers=READER)
    assert resp.status == 200
    assert await resp.read() == data
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["Content-Disposition"].split(";")[0] == disposition
    assert_policy_headers(resp, ref["sha256"])


async def test_pdf_inline_only_when_configured(aiohttp_client, backends, project) -> None:
    client = await aiohttp_client(create_app(make_config(backends, serve_pdf_inline=True)))
    claim = await new_claim(client, project)
    ref = await put(client, project, claim, PDF, "paper.pdf", "application/pdf")
    resp = await client.get(content_url(project, ref["id"]), headers=READER)
    assert resp.headers["Content-Disposition"].startswith("inline;")
    assert resp.headers["Content-Type"] == "application/pdf"


@pytest.mark.parametrize(
    "name", ['quo"te.txt', "back\\slash.txt", "sémi;colon.txt", "日本語.txt", "a%22b.txt"]
)
async def test_content_disposition_cannot_break_out(client: TestClient, project, name) -> None:
    claim = await new_claim(client, project)
    ref = await put(client, project, claim, b"x", "x.txt", "text/plain")
    # the name part carries the hostile name (backslash is a path separator to names)
    fd_name = name.replace("\\", "_")
    resp = await publish(client, project, lease(claim), b"x", name=fd_name)
    assert resp.status == 201
    ref = await resp.json()
    resp = await client.get(content_url(project, ref["id"]), headers=READER)
    value = resp.headers["Content-Disposition"]
    assert "\r" not in value and "\n" not in value
    disposition, filename, filename_star = (p.strip() for p in value.split(";"))
    assert disposition == "inline"
    assert filename.startswith('filename="') and filename.endswith('"')
    assert '"' not in filename[len('filename="') : -1] and "\\" not in filename
    assert filename_star.startswith("filename*=UTF-8''")
    from urllib.parse import unquote

    assert unquote(filename_star.removeprefix("filename*=UTF-8''")) == fd_name


async def test_ranges_etag_and_head(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    data = os.urandom(1000)
    ref = await put(client, project, claim, data, "r.bin")
    url = content_url(project, ref["id"])
    cases = {
        "bytes=0-9": (0, 9),
        "bytes=990-": (990, 999),
        "bytes=-10": (990, 999),
        "bytes=995-2000": (995, 999),
    }
    for header, (start, end) in cases.items():
        resp = await client.get(url, headers={**READER, "Range": header})
        assert resp.status == 206, header
        assert await resp.read() == data[start : end + 1]
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/1000"
        assert_policy_headers(resp, ref["sha256"])
    for header in ("bytes=1000-", "bytes=5000-6000", "bytes=-0"):
        resp = await client.get(url, headers={**READER, "Range": header})
        assert resp.status == 416, header
        assert (await resp.json())["code"] == "range_not_satisfiable"
        assert resp.headers["Content-Range"] == "bytes */1000"
    resp = await client.get(url, headers={**READER, "Range": "bytes=0-1,5-6"})
    assert resp.status == 200 and len(await resp.read()) == 1000  # multi-range: whole body
    resp = await client.get(url, headers={**READER, "If-None-Match": f'"{ref["sha256"]}"'})
    assert resp.status == 304
    assert_policy_headers(resp, ref["sha256"])
    resp = await client.head(url, headers=READER)
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "1000"
    assert_policy_headers(resp, ref["sha256"])
    resp = await client.get(url, headers={**READER, "If-None-Match": '"other"'})
    assert resp.status == 200


async def test_visibility_matrix(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    run_art = await put(client, project, claim, b"run", "run.txt")
    alice = bearer(principal_token("user:alice", "artifacts:read artifacts:write"))
    resp = await publish(client, project, alice, b"mine", filename="mine.txt")
    own_art = await resp.json()
    bob = bearer(principal_token("user:bob", "artifacts:read", projects=[project]))
    admin = bearer(principal_token("user:root", "artifacts:read artifacts:admin"))
    outsider = bearer(principal_token("user:eve", "artifacts:read", projects=["elsewhere"]))
    no_scope = bearer(principal_token("user:carol", "artifacts:write", projects=[project]))
    expect = {
        ("alice", "run"): 200,
        ("alice", "own"): 200,
        ("bob", "run"): 200,
        ("bob", "own"): 404,
        ("admin", "run"): 200,
        ("admin", "own"): 200,
        ("outsider", "run"): 404,
        ("outsider", "own"): 404,
        ("no_scope", "run"): 403,
        ("no_scope", "own"): 403,
        ("anonymous", "run"): 401,
        ("anonymous", "own"): 401,
    }
    who = {
        "alice": alice,
        "bob": bob,
        "admin": admin,
        "outsider": outsider,
        "no_scope": no_scope,
        "anonymous": {},
    }
    arts = {"run": run_art["id"], "own": own_art["id"]}
    for (person, art), status in expect.items():
        for suffix in ("", "/content"):
            url = f"/v1/projects/{project}/artifacts/{arts[art]}{suffix}"
            resp = await client.get(url, headers=who[person])
            assert resp.status == status, (person, art, suffix)
    listed = await (await client.get(f"/v1/projects/{project}/artifacts", headers=bob)).json()
    assert [i["id"] for i in listed["items"]] == [run_art["id"]]
    listed = await (await client.get(f"/v1/projects/{project}/artifacts", headers=alice)).json()
    assert {i["id"] for i in listed["items"]} == {run_art["id"], own_art["id"]}
    resp = await client.get(f"/v1/projects/{project}/artifacts", headers=outsider)
    assert resp.status == 404


async def test_list_filters(client: TestClient, project) -> None:
    a = await new_claim(client, project, step_id="build", session_id="sess_a")
    b = await new_claim(client, project, step_id="test", session_id="sess_b")
    a1 = await put(client, project, a, PNG, "chart.png", "image/png")
    a2 = await put(client, project, a, b"x", "log.txt")
    b1 = await put(client, project, b, HTML, "report.html", "text/html")
    url = f"/v1/projects/{project}/artifacts"

    async def ids(**query: str) -> list[str]:
        resp = await client.get(f"{url}?{urlencode(query)}", headers=READER)
        assert resp.status == 200, await resp.text()
        return [i["id"] for i in (await resp.json())["items"]]

    assert await ids() == [b1["id"], a2["id"], a1["id"]]  # newest first
    assert await ids(run_id=a["request"]["run_id"]) == [a2["id"], a1["id"]]
    assert await ids(job_id=b["request"]["job_id"]) == [b1["id"]]
    assert await ids(step_id="test") == [b1["id"]]
    assert await ids(session_id="sess_a") == [a2["id"], a1["id"]]
    assert await ids(attempt="1") == [b1["id"], a2["id"], a1["id"]]
    assert await ids(attempt="2") == []
    assert await ids(owner=f"run:{a['request']['run_id']}") == [a2["id"], a1["id"]]
    assert await ids(mime_class="image") == [a1["id"]]
    assert await ids(mime_class="html") == [b1["id"]]
    assert await ids(name_prefix="lo") == [a2["id"]]
    assert await ids(name_prefix="%") == []
    empty = await (await client.get(f"{url}?run_id=nope", headers=READER)).json()
    assert empty == {"items": [], "next_cursor": None}
    for bad in (
        "limit=0",
        "limit=201",
        "limit=x",
        "attempt=-1",
        "mime_class=video",
        "include_deleted=maybe",
        "cursor=garbage",
        "colour=red",
        "owner=alice",
    ):
        resp = await client.get(f"{url}?{bad}", headers=READER)
        assert resp.status == 400, bad
        assert (await resp.json())["code"] == "invalid_request"


async def test_pagination_is_stable_under_concurrent_inserts(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    first = [await put(client, project, claim, os.urandom(8), f"f{i}.bin") for i in range(7)]
    url = f"/v1/projects/{project}/artifacts?limit=3"
    seen: list[str] = []
    cursor = None
    inserted: list[dict] = []
    while True:
        resp = await client.get(url + (f"&cursor={cursor}" if cursor else ""), headers=READER)
        page = await resp.json()
        seen += [i["id"] for i in page["items"]]
        inserted += await asyncio.gather(
            *(put(client, project, claim, os.urandom(8), "new.bin") for _ in range(2))
        )
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [a["id"] for a in reversed(first)]  # each exactly once, none skipped
    assert len(set(seen)) == len(seen)


async def test_delete_tombstones_releases_quota_and_emits(
    client: TestClient, project, db, config
) -> None:
    claim = await new_claim(client, project)
    ref = await put(client, project, claim, b"delete me", "d.txt")
    before = await quota(client, project)
    url = f"/v1/projects/{project}/artifacts/{ref['id']}"
    assert (await client.delete(url, headers=READER)).status == 403
    assert (await client.delete(url, headers=ADMIN)).status == 204
    assert (await client.delete(url, headers=ADMIN)).status == 204  # idempotent
    after = await quota(client, project)
    assert after["used_bytes"] == before["used_bytes"] - 9
    assert after["artifact_count"] == before["artifact_count"] - 1
    body = await (await client.get(url, headers=READER)).json()
    assert body["state"] == "deleted" and body["deleted_at"]
    resp = await client.get(url + "/content", headers=READER)
    assert resp.status == 410
    assert (await resp.json())["code"] == "artifact_deleted"
    types = [
        r["type"]
        for r in await db.fetch("SELECT type FROM events WHERE project_id=$1 ORDER BY seq", project)
    ]
    assert types == ["artifact.created", "artifact.deleted"]
    key = await db.fetchval("SELECT object_key FROM artifacts WHERE artifact_id=$1", ref["id"])
    async with S3ObjectStore.connect(s3_settings(config)) as store:
        assert [o async for o in store.list_objects(key)] == []
    listed = await (await client.get(f"/v1/projects/{project}/artifacts", headers=READER)).json()
    assert listed["items"] == []
    listed = await (
        await client.get(f"/v1/projects/{project}/artifacts?include_deleted=true", headers=READER)
    ).json()
    assert [i["id"] for i in listed["items"]] == [ref["id"]]


async def test_owner_deletes_own_principal_artifact(client: TestClient, project) -> None:
    alice = bearer(principal_token("user:alice", "artifacts:read artifacts:write artifacts:delete"))
    bob = bearer(principal_token("user:bob", "artifacts:read artifacts:write artifacts:delete"))
    ref = await (await publish(client, project, alice, b"mine")).json()
    url = f"/v1/projects/{project}/artifacts/{ref['id']}"
    assert (await client.delete(url, headers=bob)).status == 404  # bob cannot even see it
    assert (await client.delete(url, headers=alice)).status == 204


async def mint(client: TestClient, project: str, artifact_id: str, **body: Any) -> dict:
    resp = await client.post(
        f"/v1/projects/{project}/artifacts/{artifact_id}/signed-url",
        json=body or None,
        headers=READER,
    )
    assert resp.status == 200, await resp.text()
    result: dict = await resp.json()
    return result


async def test_signed_urls(client: TestClient, project, db) -> None:
    claim = await new_claim(client, project)
    data = b"signed bytes"
    ref = await put(client, project, claim, data, "s.txt")
    other = await put(client, project, claim, b"other", "o.txt")
    signed = await mint(client, project, ref["id"], expires_in=60)
    assert signed["expires_at"].endswith("Z")
    resp = await client.get(signed["url"])  # no other credential
    assert resp.status == 200 and await resp.read() == data
    assert_policy_headers(resp, ref["sha256"])
    assert (await client.head(signed["url"])).status == 200
    parts = urlsplit(signed["url"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}

    def with_(path: str = parts.path, **changes: str) -> str:
        return f"{path}?{urlencode({**query, **changes})}"

    tampered = [
        with_(exp=str(int(query["exp"]) + 1)),
        with_(kid="url-2"),
        with_(sig=query["sig"][:-2] + ("AA" if not query["sig"].endswith("AA") else "BB")),
        with_(path=content_url(project, other["id"])),
        with_(path=parts.path.replace(project, project + "x")),
        f"{parts.path}?exp={query['exp']}&kid={query['kid']}",
    ]
    for url in tampered:
        resp = await client.get(url)
        assert resp.status == 403, url
        assert (await resp.json())["code"] == "signature_invalid"
    mints = await db.fetch("SELECT * FROM signed_url_mints WHERE artifact_id=$1", ref["id"])
    assert len(mints) == 1 and mints[0]["principal"] == "user:reader"
    assert query["sig"] not in str(dict(mints[0]))
    # revocation bumps the epoch: every URL minted so far stops working
    revoke = f"/v1/projects/{project}/artifacts/{ref['id']}/signed-urls"
    assert (await client.delete(revoke, headers=READER)).status == 403
    assert (await client.delete(revoke, headers=ADMIN)).status == 204
    resp = await client.get(signed["url"])
    assert resp.status == 403
    fresh = await mint(client, project, ref["id"])
    assert (await client.get(fresh["url"])).status == 200
    # deleted artifact: 410
    await client.delete(f"/v1/projects/{project}/artifacts/{ref['id']}", headers=ADMIN)
    assert (await client.get(fresh["url"])).status == 410
    for bad in ({"expires_in": 0}, {"expires_in": 3601}, {"expires_in": "60"}):
        resp = await client.post(
            f"/v1/projects/{project}/artifacts/{other['id']}/signed-url",
            json=bad,
            headers=READER,
        )
        assert resp.status == 400


async def test_the_same_signed_url_minted_twice(client: TestClient, project, db) -> None:
    """Two mints within one second sign the same fields: the same URL, not a 500."""
    claim = await new_claim(client, project)
    ref = await put(client, project, claim, b"twice", "t.txt")
    for _ in range(20):
        first = await mint(client, project, ref["id"], expires_in=60)
        second = await mint(client, project, ref["id"], expires_in=60)
        if first["url"] == second["url"]:
            break
    else:
        raise AssertionError("no two mints fell within the same second")
    assert (await client.get(second["url"])).status == 200
    count = await db.fetchval(
        "SELECT count(*) FROM signed_url_mints WHERE artifact_id=$1 AND expires_at=$2",
        ref["id"],
        datetime.fromisoformat(first["expires_at"]),
    )
    assert count == 1


async def test_signed_url_expiry_and_key_rotation(aiohttp_client, backends, project, db) -> None:
    old_key = SigningKey(kid="url-1", secret=b"test-url-signing-key-0123456789abcdef")
    new_key = SigningKey(kid="url-2", secret=b"rotated-url-signing-key-0123456789abcdef")
    old = await aiohttp_client(create_app(make_config(backends)))
    claim = await new_claim(old, project)
    ref = await put(old, project, claim, b"rotate", "r.txt")
    signed = await mint(old, project, ref["id"], expires_in=60)
    rotated = await aiohttp_client(
        create_app(make_config(backends, url_signing_keys=(new_key, old_key)))
    )
    assert (await rotated.get(signed["url"])).status == 200  # old keys still verify
    fresh = await mint(rotated, project, ref["id"])
    assert "kid=url-2" in fresh["url"]
    retired = await aiohttp_client(create_app(make_config(backends, url_signing_keys=(new_key,))))
    assert (await retired.get(signed["url"])).status == 403  # retired key
    assert (await retired.get(fresh["url"])).status == 200
    short = await mint(old, project, ref["id"], expires_in=1)
    await asyncio.sleep(2.1)
    resp = await old.get(short["url"])
    assert resp.status == 403
    assert (await resp.json())["code"] == "signature_invalid"


async def test_large_download_streams_exact_bytes(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    data = os.urandom(20 * 1024 * 1024 + 7)
    ref = await put(client, project, claim, data, "big.bin")
    resp = await client.get(content_url(project, ref["id"]), headers=READER)
    digest = hashlib.sha256()
    async for chunk in resp.content.iter_chunked(1 << 20):
        digest.update(chunk)
    assert digest.hexdigest() == ref["sha256"]
