"""The OpenAPI document matches the live router and is a valid OpenAPI 3.1 document."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from gateway import events, ids, openapi
from gateway.rows import EventRow
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
    ("get", "/problems"): "listProblemTypes",
    ("get", "/problems/{slug}"): "getProblemType",
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


def _operations(document: dict[str, Any]):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def _response(document: dict[str, Any], response: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The response (its $ref resolved), and whether it is a Problem response."""
    ref = response.get("$ref")
    if ref is None:
        return response, False
    return document["components"]["responses"][ref.rsplit("/", 1)[1]], True


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # $refs to #/components/... resolve against this root
    root = {"components": document["components"], **schema}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _examples(media: dict[str, Any]) -> list[Any]:
    if "example" in media:
        return [media["example"]]
    return [example["value"] for example in media.get("examples", {}).values()]


def _bodies(document: dict[str, Any]):
    """Every media type of every request body, 2xx response and Problem response."""
    for method, path, operation in _operations(document):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            yield (method, path, "request", media_type), media
        for status, response in operation["responses"].items():
            resolved, is_problem = _response(document, response)
            if status.startswith("2") or is_problem:
                for media_type, media in resolved.get("content", {}).items():
                    yield (method, path, status, media_type), media


def test_every_request_body_and_every_success_and_problem_response_has_examples() -> None:
    document = openapi.document()
    seen = 0
    for where, media in _bodies(document):
        assert _examples(media), where
        seen += 1
    assert seen > 40


def test_every_example_fits_its_schema() -> None:
    document = openapi.document()
    checked = 0
    for where, media in _bodies(document):
        if "schema" not in media:
            continue
        validator = _validator(document, media["schema"])
        for example in _examples(media):
            errors = [e.message for e in validator.iter_errors(example)]
            assert not errors, (where, errors)
            checked += 1
    for method, path, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if "example" in parameter:
                validator = _validator(document, parameter["schema"])
                assert validator.is_valid(parameter["example"]), (method, path, parameter)
                checked += 1
    assert checked > 60


def test_every_operation_has_a_summary_and_a_description() -> None:
    for method, path, operation in _operations(openapi.document()):
        assert operation.get("summary"), (method, path)
        assert len(operation.get("description", "")) > 20, (method, path)


def test_the_document_names_its_servers_and_license() -> None:
    document = openapi.document()
    assert document["servers"] == [
        {"url": "/", "description": document["servers"][0]["description"]}
    ]
    assert document["info"]["license"] == {"name": "Apache-2.0", "identifier": "Apache-2.0"}


CONTENT_HEADERS = {"ETag", "Repr-Digest", "Content-Disposition", "Accept-Ranges"}


def test_response_headers_are_declared() -> None:
    document = openapi.document()
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            resolved, _ = _response(document, response)
            headers = set(resolved.get("headers", {}))
            if status == "201":
                assert "Location" in headers, (method, path)
            if path.endswith("/content") and status in ("200", "206"):
                assert headers >= CONTENT_HEADERS, (method, path, status)
            if path.endswith("/content") and status == "206":
                assert "Content-Range" in headers
            if path.endswith("/content") and status == "304":
                assert "ETag" in headers
            if status == "416":
                assert "Content-Range" in headers
            if status == "401":
                assert "WWW-Authenticate" in headers
            if status == "429":
                assert resolved["headers"]["Retry-After"]["required"] is True
            if status == "503":
                assert "Retry-After" in headers
    publish = document["paths"]["/v1/projects/{project}/artifacts"]["post"]["responses"]
    assert "Location" in publish["200"]["headers"]  # an Idempotency-Key replay too


async def test_declared_headers_are_sent(client: TestClient, project) -> None:
    document = await (await client.get("/v1/openapi.json")).json()
    content = document["paths"]["/v1/projects/{project}/artifacts/{artifact_id}/content"]["get"]
    created = await client.post(
        f"/v1/projects/{project}/claims",
        json={"run_id": "r", "step_id": "s", "job_id": "j", "attempt": 1, "worker_session_id": "w"},
        headers=SCHEDULER,
    )
    claim = await created.json()
    assert created.status == 201
    assert created.headers["Location"].endswith(claim["lease_id"])
    published = await publish(client, project, lease(claim))
    ref = await published.json()
    assert published.headers["Location"].endswith(ref["id"])
    url = f"/v1/projects/{project}/artifacts/{ref['id']}/content"
    for status, headers in [("200", {}), ("206", {"Range": "bytes=0-0"})]:
        resp = await client.get(url, headers={**READER, **headers})
        assert str(resp.status) == status
        for name, header in content["responses"][status]["headers"].items():
            assert name in resp.headers, (status, name)
            if "const" in header["schema"]:
                assert resp.headers[name] == header["schema"]["const"]


# The patterns the code enforces (gateway.ids), as the document must show them.
PATTERNS = {
    "project": ids.PROJECT_ID,
    "artifact_id": ids.ARTIFACT_ID,
    "lease_id": ids.LEASE_ID,
}


def test_id_patterns_are_the_ones_the_code_enforces_and_written_once() -> None:
    document = openapi.document()
    for method, path, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["name"] in PATTERNS and parameter["in"] == "path":
                expected = f"^{PATTERNS[parameter['name']].pattern}$"
                assert parameter["schema"]["pattern"] == expected, (method, path)
    labels = [
        document["components"]["schemas"]["Artifact"]["properties"]["artifact_type"],
        document["components"]["schemas"]["JsonPublish"]["properties"]["artifact_type"],
    ]
    assert all(label["pattern"] == f"^{ids.ARTIFACT_TYPE.pattern}$" for label in labels)
    source = Path(openapi.__file__).read_text()
    for pattern in [*PATTERNS.values(), ids.ARTIFACT_TYPE]:
        assert pattern.pattern not in source, pattern.pattern


@pytest.mark.parametrize(
    "payload",
    ["{not json", json.dumps([1, 2]), "null"],
)
def test_the_event_schema_admits_an_event_whose_payload_is_unreadable(payload: str) -> None:
    document = openapi.document()
    row = EventRow(
        seq=7,
        type="artifact.created",
        artifact_id="art_01JD3K7Q9ZB4M2X8N6V5T1R0PA",
        payload=payload,
        metadata='{"rows": 1}',
        created_at=datetime(2026, 1, 15, tzinfo=UTC),
    )
    item = events.item(row)
    assert item["artifact"]["payload_omitted"] == "unreadable"
    _validator(document, {"$ref": "#/components/schemas/Event"}).validate(item)
    page = {"items": [item], "next_after": 7}
    _validator(document, {"$ref": "#/components/schemas/EventPage"}).validate(page)


def _query_schema(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    operation = document["paths"][path]["get"]
    return next(p["schema"] for p in operation["parameters"] if p["name"] == name)


async def test_documented_maxima_are_the_enforced_ones(client: TestClient, project) -> None:
    """At each documented maximum the gateway accepts; one above, it refuses (400)."""
    document = await (await client.get("/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    base = f"/v1/projects/{project}"
    claim = await new_claim(client, project)
    ref = await (await publish(client, project, lease(claim))).json()

    listed = _query_schema(document, "/v1/projects/{project}/artifacts", "limit")["maximum"]
    fed = _query_schema(document, "/v1/projects/{project}/events", "limit")["maximum"]
    for url, top, headers in [
        (f"{base}/artifacts", listed, READER),
        (f"{base}/events", fed, ADMIN),
    ]:
        assert (await client.get(url, params={"limit": top}, headers=headers)).status == 200
        refused = await client.get(url, params={"limit": top + 1}, headers=headers)
        assert refused.status == 400, url

    mint = document["paths"]["/v1/projects/{project}/artifacts/{artifact_id}/signed-url"]["post"]
    top = mint["requestBody"]["content"]["application/json"]["schema"]["properties"]
    top = top["expires_in"]["maximum"]
    url = f"{base}/artifacts/{ref['id']}/signed-url"
    assert (await client.post(url, json={"expires_in": top}, headers=READER)).status == 200
    assert (await client.post(url, json={"expires_in": top + 1}, headers=READER)).status == 400

    request = schemas["ClaimRequest"]["properties"]
    attempt, chars = request["attempt"]["maximum"], request["run_id"]["maxLength"]
    ok = await new_claim(client, project, attempt=attempt, run_id="r" * chars)
    assert ok["lease_id"]
    for over in ({"attempt": attempt + 1}, {"run_id": "r" * (chars + 1)}):
        body = {**claim["request"], "job_id": "other", **over}
        resp = await client.post(f"{base}/claims", json=body, headers=SCHEDULER)
        assert resp.status == 400, over

    publish_json = schemas["JsonPublish"]["properties"]
    refs = ["art_01JD3K7Q9ZB4M2X8N6V5T1R0PA"] * (publish_json["derived_from"]["maxItems"] + 1)
    for body in (
        {"name": "n" * (publish_json["name"]["maxLength"] + 1), "content": "x"},
        {"name": "a.txt", "content": "x", "derived_from": refs},
    ):
        resp = await client.post(f"{base}/artifacts", json=body, headers=lease(claim))
        assert resp.status == 400, body
