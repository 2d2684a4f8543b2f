"""Small text artifacts from a JSON body, artifact_type, and ?include_content=true."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from tests.conftest import bearer, make_config, principal_token
from tests.helpers import ADMIN, READER, lease, new_claim, publish, quota

ALICE = bearer(principal_token("user:alice", "artifacts:read artifacts:write"))


def url(project: str) -> str:
    return f"/v1/projects/{project}/artifacts"


async def problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    body = await resp.text()
    assert resp.status == status, body
    data: dict[str, Any] = json.loads(body)
    assert data["code"] == code, data
    return data


async def nothing_stored(client: TestClient, project: str) -> None:
    listed = await (await client.get(url(project), headers=ADMIN)).json()
    assert listed["items"] == []
    assert (await quota(client, project))["used_bytes"] == 0


async def test_json_publish_is_a_publish(client: TestClient, project: str) -> None:
    claim = await new_claim(client, project)
    text = "# Plan\n\nÉtape 1 — write the report.\n"
    resp = await client.post(
        url(project),
        json={
            "name": "plan.md",
            "content": text,
            "description": "the plan",
            "metadata": {"model": "m1", "steps": [1, 2]},
            "artifact_type": "plan",
        },
        headers=lease(claim),
    )
    assert resp.status == 201, await resp.text()
    ref = await resp.json()
    assert resp.headers["Location"] == f"{url(project)}/{ref['id']}"
    data = text.encode()
    assert ref == {
        "type": "artifact",
        "id": ref["id"],
        "name": "plan.md",
        "mime": "text/markdown",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    full = await (await client.get(f"{url(project)}/{ref['id']}", headers=READER)).json()
    assert full["lineage"]["run_id"] == claim["request"]["run_id"]
    assert full["description"] == "the plan"
    assert full["metadata"] == {"model": "m1", "steps": [1, 2]}
    assert full["artifact_type"] == "plan"
    content = await client.get(f"{url(project)}/{ref['id']}/content", headers=READER)
    assert await content.read() == data
    events = await (await client.get(f"/v1/projects/{project}/events", headers=READER)).json()
    assert events["items"][-1]["artifact"] == full
    assert (await quota(client, project))["used_bytes"] == len(data)


async def test_json_publish_by_a_principal_with_a_mime(client: TestClient, project: str) -> None:
    resp = await client.post(
        url(project),
        json={"name": "n.csv", "content": "a,b\n1,2\n", "mime": "text/csv"},
        headers=ALICE,
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["mime"] == "text/csv"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "a.md", "content": "x", "run_id": "forged"}, 400, "lineage_not_allowed"),
        ({"name": "a.md", "content": "x", "Session-Id": "forged"}, 400, "lineage_not_allowed"),
        ({"name": "a.md", "content": "x", "colour": "red"}, 400, "invalid_request"),
        ({"name": "a.md", "content": "x", "expires_in": 60}, 400, "invalid_request"),
        ({"content": "x"}, 400, "invalid_request"),
        ({"name": "a.md"}, 400, "invalid_request"),
        ({"name": "a.md", "content": 42}, 400, "invalid_request"),
        ({"name": "a.md", "content": "x", "mime": "not a mime"}, 400, "invalid_request"),
        ({"name": "a.md", "content": "x", "artifact_type": "Not A Slug"}, 400, "invalid_request"),
        ({"name": "a.md", "content": "x", "metadata": [1]}, 400, "invalid_request"),
        ({"name": "a\u0000.md", "content": "x"}, 400, "invalid_request"),
        ({"name": "a.md", "content": "x", "derived_from": ["nope"]}, 400, "invalid_request"),
        ([1, 2], 400, "invalid_request"),
    ],
)
async def test_json_publish_refusals_store_nothing(
    client: TestClient, project: str, body: Any, status: int, code: str
) -> None:
    claim = await new_claim(client, project)
    resp = await client.post(url(project), json=body, headers=lease(claim))
    await problem(resp, status, code)
    await nothing_stored(client, project)


async def test_json_content_past_the_limit_is_413(aiohttp_client, backends, project) -> None:
    client = await aiohttp_client(create_app(make_config(backends, max_json_content_bytes=1000)))
    resp = await client.post(
        url(project), json={"name": "a.md", "content": "é" * 501}, headers=ALICE
    )
    data = await problem(resp, 413, "artifact_too_large")
    assert "multipart" in data["detail"]
    ok = await client.post(url(project), json={"name": "a.md", "content": "é" * 500}, headers=ALICE)
    assert ok.status == 201


async def test_json_publish_quota_and_idempotency(client: TestClient, project: str) -> None:
    key = {"Idempotency-Key": "k-" + secrets.token_hex(4)}
    body = {"name": "a.md", "content": "x" * 100}
    first = await client.post(url(project), json=body, headers={**ALICE, **key})
    assert first.status == 201
    again = await client.post(url(project), json=body, headers={**ALICE, **key})
    assert again.status == 200
    assert (await again.json())["id"] == (await first.json())["id"]
    other = await client.post(url(project), json={**body, "content": "y"}, headers={**ALICE, **key})
    await problem(other, 409, "idempotency_conflict")
    await client.put(f"/v1/projects/{project}/quota", json={"limit_bytes": 150}, headers=ADMIN)
    full = await client.post(url(project), json=body, headers=ALICE)
    await problem(full, 413, "quota_exceeded")
    assert (await quota(client, project))["used_bytes"] == 100


async def test_artifact_type_from_a_part_and_the_list_filter(
    client: TestClient, project: str
) -> None:
    claim = await new_claim(client, project)
    report = await (await publish(client, project, lease(claim), artifact_type="report")).json()
    await publish(client, project, lease(claim), filename="b.txt")
    await client.post(
        url(project),
        json={"name": "log.txt", "content": "ok", "artifact_type": "log"},
        headers=ALICE,
    )
    listed = await (await client.get(url(project) + "?artifact_type=report", headers=READER)).json()
    assert [i["id"] for i in listed["items"]] == [report["id"]]
    assert listed["items"][0]["artifact_type"] == "report"
    untyped = await (await client.get(url(project), headers=ADMIN)).json()
    assert sorted(str(i["artifact_type"]) for i in untyped["items"]) == ["None", "log", "report"]
    bad = await client.get(url(project) + "?artifact_type=NOPE", headers=READER)
    await problem(bad, 400, "invalid_request")
    refused = await publish(client, project, lease(claim), artifact_type="no spaces")
    await problem(refused, 400, "invalid_request")


async def test_include_content(client: TestClient, project: str) -> None:
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + b"\0" * 40
    text = await (
        await publish(client, project, ALICE, "héllo\n".encode(), filename="t.txt")
    ).json()
    image = await (
        await publish(client, project, ALICE, png, filename="i.png", content_type="image/png")
    ).json()
    big = await (
        await publish(client, project, ALICE, b"x" * (1024 * 1024 + 1), filename="big.txt")
    ).json()
    gone = await (await publish(client, project, ALICE, b"bye", filename="gone.txt")).json()
    assert (await client.delete(f"{url(project)}/{gone['id']}", headers=ADMIN)).status == 204

    async def get(ref: dict[str, Any], flag: str = "true") -> dict[str, Any]:
        resp = await client.get(f"{url(project)}/{ref['id']}?include_content={flag}", headers=ALICE)
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    assert (await get(text))["content"] == "héllo\n"
    assert "content" not in await get(text, "false")
    plain = await (await client.get(f"{url(project)}/{text['id']}", headers=ALICE)).json()
    assert "content" not in plain
    for ref, why in [(image, "binary"), (big, "too_large"), (gone, "deleted")]:
        data = await get(ref)
        assert data["content"] is None and data["content_omitted"] == why
    bad = await client.get(f"{url(project)}/{text['id']}?include_content=yes", headers=ALICE)
    await problem(bad, 400, "invalid_request")
