"""Artifacts of every JavaScript MIME type, read back: attachments labelled
``application/octet-stream``, ``nosniff`` and sandboxed, by token and by signed URL,
for every spelling of the type a publish may declare."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from gateway import content
from tests.helpers import READER, lease, new_claim, publish
from tests.unit.test_javascript_types import WHATWG_JAVASCRIPT

SCRIPT = b"window.__ran = true;\n"


@pytest.mark.parametrize("mime", WHATWG_JAVASCRIPT)
async def test_javascript_artifacts_never_go_out_as_script(
    client: TestClient, project: str, mime: str
) -> None:
    claim = await new_claim(client, project)
    declared = [mime, f"{mime.upper()}; charset=utf-8"]
    ids = []
    for spelled in declared:
        resp = await publish(
            client, project, lease(claim), SCRIPT, filename="app.js", content_type=spelled
        )
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert body["mime"] == mime
        ids.append(body["id"])
    for artifact_id in ids:
        path = f"/v1/projects/{project}/artifacts/{artifact_id}"
        minted = await client.post(f"{path}/signed-url", headers=READER)
        signed = (await minted.json())["url"]
        for method, url, headers in (
            ("GET", f"{path}/content", READER),
            ("HEAD", f"{path}/content", READER),
            ("GET", signed, {}),
            ("GET", f"{path}/content", {**READER, "Range": "bytes=0-3"}),
        ):
            resp = await client.request(method, url, headers=headers)
            assert resp.status in (200, 206), (method, url, resp.status)
            assert resp.headers["Content-Type"] == content.OCTET_STREAM
            assert resp.headers["Content-Disposition"].startswith("attachment;")
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            csp = [d.strip() for d in resp.headers["Content-Security-Policy"].split(";")]
            assert "sandbox" in csp and "default-src 'none'" in csp
            if method == "GET" and resp.status == 200:
                assert await resp.read() == SCRIPT
