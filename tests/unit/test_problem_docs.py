"""Every problem the gateway can answer has an entry in the catalogue served at /problems."""

from __future__ import annotations

import html
import re

from gateway import errors, problem_docs
from gateway.events import STREAM_END_REASONS


def test_every_api_error_has_an_entry_with_when_and_what_to_do() -> None:
    classes = problem_docs.error_classes()
    declared = {
        value.code
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.ApiError)
    }
    assert {cls.code for cls in classes} == declared
    docs = {doc.code: doc for doc in problem_docs.catalogue()}
    for cls in classes:
        doc = docs[cls.code]
        assert (doc.status, doc.title) == (cls.status, cls.title)
        assert len(doc.when) > 20, cls.code
        assert len(doc.remedy) > 5, cls.code


def test_the_codes_that_end_a_stream_and_the_framework_fallback_have_entries() -> None:
    docs = problem_docs.by_slug()
    for code in [*STREAM_END_REASONS, problem_docs.HTTP_ERROR]:
        doc = docs[problem_docs.slug_of(code)]
        assert doc.when and doc.remedy


def test_every_type_is_the_contracts_uri_and_slugs_are_unique() -> None:
    docs = problem_docs.catalogue()
    assert len({doc.slug for doc in docs}) == len(docs)
    for doc in docs:
        assert doc.type == errors.Problem(status=400, code=doc.code, title="").body("r")["type"]
        assert doc.type == f"https://mobius.dev/problems/{doc.code.replace('_', '-')}"
        assert doc.path == f"/problems/{doc.slug}"


def test_the_catalogue_page_has_one_anchor_per_slug_and_no_script() -> None:
    page = problem_docs.render_catalogue()
    anchors = re.findall(r'<section id="([a-z-]+)">', page)
    assert sorted(anchors) == sorted(problem_docs.by_slug())
    assert "<script" not in page.lower()
    assert " style=" not in page.lower()


def test_prose_is_escaped() -> None:
    doc = problem_docs.ProblemDoc(
        code="x", title="<b>", status=400, when="a `<script>` here", remedy="&"
    )
    entry = problem_docs.render_entry(doc)
    assert "<script>" not in entry
    assert f"<code>{html.escape('<script>')}</code>" in entry
    assert "&lt;b&gt;" in entry
