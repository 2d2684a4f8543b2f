"""The OpenAPI document matches the live router and is a valid OpenAPI 3.1 document."""

import jsonschema
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from tests.helpers import ADMIN, READER, lease, new_claim, publish


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


async def test_every_route_is_documented_and_every_documented_route_exists(
    client: TestClient,
) -> None:
    document = await (await client.get("/v1/openapi.json")).json()
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    live = live_routes(client.app)
    assert live == documented


async def test_responses_match_their_schemas(client: TestClient, project) -> None:
    document = await (await client.get("/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]

    def check(data, name: str) -> None:
        schema = {"components": {"schemas": schemas}, **schemas[name]}  # $refs resolve here
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)

    claim = await new_claim(client, project)
    check({k: v for k, v in claim.items() if k != "request"}, "Claim")
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
