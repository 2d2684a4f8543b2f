"""Every problem ``type`` resolves: each gateway serves its documentation at /problems/<slug>."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from gateway import problem_docs
from gateway.api.ui import CONTENT_SECURITY_POLICY
from gateway.errors import PROBLEM_BASE
from tests.helpers import READER


def _assert_page_headers(resp) -> None:
    assert resp.content_type == "text/html"
    assert resp.charset == "utf-8"
    assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"


async def test_the_catalogue_lists_every_code_with_an_anchor(client: TestClient) -> None:
    resp = await client.get("/problems")
    assert resp.status == 200
    _assert_page_headers(resp)
    page = await resp.text()
    assert "<script" not in page.lower()
    anchors = set(re.findall(r'<section id="([a-z-]+)">', page))
    assert anchors == set(problem_docs.by_slug())
    for doc in problem_docs.catalogue():
        assert f"<code>{doc.code}</code>" in page
        assert doc.type in page


async def test_every_problem_slug_is_served(client: TestClient) -> None:
    for doc in problem_docs.catalogue():
        resp = await client.get(doc.path, allow_redirects=False)
        assert resp.status == 200, doc.slug
        _assert_page_headers(resp)
        page = await resp.text()
        assert f'<section id="{doc.slug}">' in page
        assert f'href="/problems#{doc.slug}"' in page


async def test_an_unknown_slug_is_a_problem_404(client: TestClient) -> None:
    resp = await client.get("/problems/no-such-problem")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["code"] == "not_found"


async def test_the_type_of_a_live_problem_resolves_on_the_gateway(
    client: TestClient, project: str
) -> None:
    answers = [
        await client.get(f"/v1/projects/{project}/artifacts/nope", headers=READER),
        await client.get(f"/v1/projects/{project}/artifacts"),
        await client.get("/no/such/route"),
    ]
    for resp in answers:
        problem = await resp.json()
        assert problem["type"].startswith(PROBLEM_BASE)
        slug = problem["type"].removeprefix(PROBLEM_BASE)
        page = await client.get(f"/problems/{slug}")
        assert page.status == 200, slug
        assert f"<code>{problem['code']}</code>" in await page.text()


async def test_every_problem_response_of_the_document_links_its_codes(
    client: TestClient,
) -> None:
    document = await (await client.get("/v1/openapi.json")).json()
    for name, response in document["components"]["responses"].items():
        status = int(name.removeprefix("Problem"))
        codes = [doc for doc in problem_docs.catalogue() if doc.status == status]
        assert codes, name
        for doc in codes:
            assert f"]({doc.path})" in response["description"], (name, doc.code)
        assert set(response["content"]["application/problem+json"]["examples"]) == {
            doc.code for doc in codes
        }
