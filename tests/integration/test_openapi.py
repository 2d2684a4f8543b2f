"""The OpenAPI document matches the live router and is a valid OpenAPI 3.1 document."""

import re
from pathlib import Path

import jsonschema
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from gateway import openapi
from tests.helpers import ADMIN, READER, SCHEDULER, lease, new_claim, publish


def live_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method != "*":
            routes.add((route.method.lower(), path))
    return routes


async def test_document_is_valid_openapi_31(client: TestClient) -> None:
    resp = await client.get("/v1/openapi.json")
    assert resp.status == 200
    document = await resp.json()
    assert document["openapi"].startswith("3.1")
    validate(document)


# The artifact browser's pages (gateway.api.UI_ROUTES) are an HTML application on the
# API, not operations of it: generated clients get no functions for them.
UI_PAGES = {("get", "/ui"), ("get", "/ui/{path}")}


async def test_every_route_is_documented_and_every_documented_route_exists(
    client: TestClient,
) -> None:
    document = await (await client.get("/v1/openapi.json")).json()
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    live = live_routes(client.app)
    assert live >= UI_PAGES
    assert live - UI_PAGES == documented
    assert not any(path.startswith("/ui") for _, path in documented)


# Generated clients name their functions after these: renaming one breaks them.
OPERATION_IDS = {
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
    ("get", "/v1/openapi.json"): "openapi",
    ("post", "/v1/projects/{project}/claims"): "registerClaim",
    ("post", "/v1/projects/{project}/claims/{lease_id}/renew"): "renewClaim",
    ("delete", "/v1/projects/{project}/claims/{lease_id}"): "releaseClaim",
    ("post", "/v1/projects/{project}/artifacts"): "publishArtifact",
    ("get", "/v1/projects/{project}/artifacts"): "listArtifacts",
    ("get", "/v1/projects/{project}/artifacts/quota"): "getQuota",
    ("put", "/v1/projects/{project}/quota"): "putQuota",
    ("get", "/v1/projects/{project}/artifacts/{artifact_id}"): "getArtifact",
    ("delete", "/v1/projects/{project}/artifacts/{artifact_id}"): "deleteArtifact",
    ("get", "/v1/projects/{project}/artifacts/{artifact_id}/content"): "getArtifactContent",
    ("head", "/v1/projects/{project}/artifacts/{artifact_id}/content"): "headArtifactContent",
    ("post", "/v1/projects/{project}/artifacts/{artifact_id}/signed-url"): "mintSignedUrl",
    ("delete", "/v1/projects/{project}/artifacts/{artifact_id}/signed-urls"): "revokeSignedUrls",
    ("get", "/v1/projects/{project}/events"): "listEvents",
}


def test_every_operation_has_a_stable_unique_operation_id_and_declared_tags() -> None:
    document = openapi.document()
    declared = {tag["name"]: tag for tag in document["tags"]}
    assert all(tag.get("description") for tag in declared.values())
    ids = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            ids[(method, path)] = operation["operationId"]
            assert re.fullmatch(r"[a-z][A-Za-z0-9]*", operation["operationId"])
            assert operation["tags"], (method, path)
            assert set(operation["tags"]) <= set(declared), (method, path)
    assert len(set(ids.values())) == len(ids)
    assert ids == OPERATION_IDS
    used = {tag for ops in document["paths"].values() for op in ops.values() for tag in op["tags"]}
    assert used == set(declared)


def test_the_prose_docs_name_every_operation() -> None:
    prose = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    for operation_id in OPERATION_IDS.values():
        assert f"`{operation_id}`" in prose, operation_id


def test_files_are_declared_binary() -> None:
    document = openapi.document()
    one = document["paths"]["/v1/projects/{project}/artifacts"]["post"]
    form = one["requestBody"]["content"]["multipart/form-data"]
    file = form["schema"]["properties"]["file"]
    assert file["type"] == "string"
    assert file["format"] == "binary"
    assert file["contentMediaType"] == "application/octet-stream"
    assert "file" in form["encoding"]
    content = document["paths"]["/v1/projects/{project}/artifacts/{artifact_id}/content"]
    for method in ("get", "head"):
        for status in ("200", "206"):
            media = content[method]["responses"][status]["content"]
            assert media["application/octet-stream"]["schema"] == {
                "type": "string",
                "format": "binary",
            }


async def test_responses_match_their_schemas(client: TestClient, project) -> None:
    document = await (await client.get("/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]

    def check(data, name: str) -> None:
        schema = {"components": {"schemas": schemas}, **schemas[name]}  # $refs resolve here
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)

    claim = await new_claim(client, project)
    check({k: v for k, v in claim.items() if k != "request"}, "Claim")
    renewed = await client.post(
        f"/v1/projects/{project}/claims/{claim['lease_id']}/renew",
        json={"ttl_seconds": 60},
        headers=SCHEDULER,
    )
    check(await renewed.json(), "ClaimRenewal")
    ref = await (await publish(client, project, lease(claim))).json()
    check(ref, "ArtifactRef")
    full = await (
        await client.get(f"/v1/projects/{project}/artifacts/{ref['id']}", headers=READER)
    ).json()
    check(full, "Artifact")
    page = await (await client.get(f"/v1/projects/{project}/artifacts", headers=READER)).json()
    check(page, "ArtifactList")
    check(
        await (await client.get(f"/v1/projects/{project}/artifacts/quota", headers=READER)).json(),
        "Quota",
    )
    events = await (await client.get(f"/v1/projects/{project}/events", headers=ADMIN)).json()
    check(events, "EventPage")
    problem = await (
        await client.get(f"/v1/projects/{project}/artifacts/nope", headers=READER)
    ).json()
    check(problem, "Problem")
