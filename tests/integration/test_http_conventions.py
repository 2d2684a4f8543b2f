"""HTTP conventions over the whole route table: a ``401`` names the scheme it
wants (``WWW-Authenticate``, RFC 9110 §11.6.1), and a problem names the path it
happened on (``instance``, RFC 9457 §3.1.5) without the query."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from gateway.api import ROUTES
from gateway.errors import WWW_AUTHENTICATE
from tests.helpers import lease, new_claim, publish
from tests.integration.test_input_classes import _path


async def test_every_401_carries_www_authenticate(client: TestClient, project) -> None:
    claim = await new_claim(client, project)
    artifact = (await (await publish(client, project, lease(claim))).json())["id"]
    values = {
        "project": project,
        "artifact_id": artifact,
        "lease_id": claim["lease_id"],
        "slug": "quota-exceeded",
    }
    refused = 0
    for method, template, _handler in ROUTES:
        path = _path(template, **values)
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            resp = await client.request(method, path + "?sig=s3cret", headers=headers)
            if resp.status != 401:
                continue
            refused += 1
            assert resp.headers.get("WWW-Authenticate") == WWW_AUTHENTICATE, (method, template)
            body = await resp.json()
            assert body["code"] == "unauthenticated"
            assert body["instance"] == path, (method, template)
    assert refused >= 20  # every route that needs a credential, both ways


async def test_other_problems_carry_their_instance_but_no_query(
    client: TestClient, project
) -> None:
    path = f"/v1/projects/{project}/artifacts/art_00000000000000000000000000"
    resp = await client.get(path + "?sig=s3cret&exp=1", headers={"Authorization": "Bearer x"})
    body = await resp.json()
    assert body["instance"] == path
    assert "s3cret" not in await resp.text()
    assert "WWW-Authenticate" not in (await client.get("/healthz")).headers
