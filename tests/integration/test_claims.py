"""Claims: register, supersede, renew, release — and what each does to a lease token."""

from aiohttp.test_utils import TestClient

from tests.conftest import bearer, principal_token
from tests.helpers import SCHEDULER, lease, new_claim, publish


async def test_register_returns_lease_token_and_it_publishes(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    assert claim["lease_id"].startswith("lse_")
    assert claim["expires_at"].endswith("Z")
    resp = await publish(client, project, lease(claim))
    assert resp.status == 201, await resp.text()


async def test_claims_need_claims_write_in_the_project(client: TestClient, project) -> None:
    body = {"run_id": "r", "step_id": "s", "job_id": "j", "attempt": 1, "worker_session_id": "w"}
    resp = await client.post(f"/v1/projects/{project}/claims", json=body)
    assert resp.status == 401
    reader = bearer(principal_token("user:bob", "artifacts:read"))
    resp = await client.post(f"/v1/projects/{project}/claims", json=body, headers=reader)
    assert resp.status == 403
    assert (await resp.json())["code"] == "forbidden"
    outsider = bearer(principal_token("svc:s", "claims:write", projects=["elsewhere"]))
    resp = await client.post(f"/v1/projects/{project}/claims", json=body, headers=outsider)
    assert resp.status == 403


async def test_bad_claim_bodies_are_invalid_requests(client: TestClient, project) -> None:
    url = f"/v1/projects/{project}/claims"
    for body in (
        {"run_id": "r", "step_id": "s", "job_id": "j", "attempt": 0, "worker_session_id": "w"},
        {"run_id": "r", "step_id": "s", "job_id": "j", "attempt": "1", "worker_session_id": "w"},
        {"step_id": "s", "job_id": "j", "attempt": 1, "worker_session_id": "w"},
        {"run_id": "r\n", "step_id": "s", "job_id": "j", "attempt": 1, "worker_session_id": "w"},
    ):
        resp = await client.post(url, json=body, headers=SCHEDULER)
        assert resp.status == 400, body
        assert (await resp.json())["code"] == "invalid_request"
    resp = await client.post(url, data=b"{not json", headers=SCHEDULER)
    assert resp.status == 400


async def test_higher_attempt_supersedes(client: TestClient, project) -> None:
    first = await new_claim(client, project, attempt=1)
    second = await new_claim(
        client,
        project,
        attempt=2,
        run_id=first["request"]["run_id"],
        job_id=first["request"]["job_id"],
    )
    assert second["superseded"] == first["lease_id"]
    resp = await publish(client, project, lease(first))
    assert resp.status == 403
    assert (await resp.json())["code"] == "lease_superseded"
    assert (await publish(client, project, lease(second))).status == 201
    # a lower or equal attempt cannot take the job back
    resp = await client.post(
        f"/v1/projects/{project}/claims",
        json={**first["request"], "attempt": 2},
        headers=SCHEDULER,
    )
    assert resp.status == 409
    assert (await resp.json())["code"] == "claim_conflict"


async def test_release_stops_the_token_at_once(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    url = f"/v1/projects/{project}/claims/{claim['lease_id']}"
    assert (await client.delete(url, headers=SCHEDULER)).status == 204
    resp = await publish(client, project, lease(claim))
    assert resp.status == 403
    assert (await resp.json())["code"] == "lease_inactive"
    assert (await client.delete(url, headers=SCHEDULER)).status == 204  # idempotent
    missing = f"/v1/projects/{project}/claims/lse_01JD3K7Q9ZB4M2X8N6V5T1R0PA"
    assert (await client.delete(missing, headers=SCHEDULER)).status == 404


async def test_renew_moves_expiry(client: TestClient, project) -> None:
    claim = await new_claim(client, project, ttl_seconds=60)
    url = f"/v1/projects/{project}/claims/{claim['lease_id']}/renew"
    resp = await client.post(url, json={"ttl_seconds": 3000}, headers=SCHEDULER)
    assert resp.status == 200
    assert (await resp.json())["expires_at"] > claim["expires_at"]


async def test_expired_claim_is_inactive(client: TestClient, project, backends) -> None:
    import asyncpg

    claim = await new_claim(client, project)
    conn = await asyncpg.connect(backends.database_url)
    try:
        await conn.execute(
            "UPDATE job_claims SET expires_at = now() - interval '1 second' WHERE lease_id = $1",
            claim["lease_id"],
        )
    finally:
        await conn.close()
    resp = await publish(client, project, lease(claim))
    assert resp.status == 403
    assert (await resp.json())["code"] == "lease_inactive"
    renew = f"/v1/projects/{project}/claims/{claim['lease_id']}/renew"
    assert (await client.post(renew, json={}, headers=SCHEDULER)).status == 403


async def test_lease_of_another_project_is_forbidden(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    resp = await publish(client, project + "-other", lease(claim))
    assert resp.status == 403
    assert (await resp.json())["code"] == "forbidden"
