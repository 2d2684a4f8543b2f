"""healthz, readyz and the problem+json envelope, against the real backends."""

from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.devstack import free_port
from tests.conftest import make_config


async def test_healthz_and_readyz(client: TestClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["checks"] == {"postgres": "ok", "object_storage": "ok"}
    assert resp.headers["X-Request-ID"]


async def test_readyz_names_the_failing_part(aiohttp_client, backends) -> None:
    config = make_config(backends, s3_endpoint_url=f"http://127.0.0.1:{free_port()}")
    client = await aiohttp_client(create_app(config))
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["code"] == "unavailable"
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["object_storage"].startswith("failed")
    assert "object_storage" in body["detail"]
    assert (await client.get("/healthz")).status == 200


async def test_unknown_route_is_a_problem_with_request_id(client: TestClient) -> None:
    resp = await client.get("/v1/nothing-here", headers={"X-Request-ID": "req-abc.123"})
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["code"] == "not_found"
    assert body["status"] == 404
    assert body["type"] == "https://mobius.dev/problems/not-found"
    assert body["request_id"] == "req-abc.123"
    assert resp.headers["X-Request-ID"] == "req-abc.123"


async def test_hostile_request_id_is_replaced(client: TestClient) -> None:
    resp = await client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert resp.headers["X-Request-ID"] != "x" * 500
    assert len(resp.headers["X-Request-ID"]) == 26
