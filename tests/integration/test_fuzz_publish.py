"""A multipart fuzzer over the publish parser: whatever the body, the answer is a
documented status (never a 5xx), and only a 201 leaves an artifact behind."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from tests.conftest import make_config
from tests.helpers import ServerThread, request

DOCUMENTED = {201, 400, 403, 413, 415}
CREATED: set[str] = set()  # artifacts the fuzzer's requests were told were published
BOUNDARY = "fuzzB0undary"


@pytest.fixture(scope="module")
def server(backends) -> Iterator[ServerThread]:
    config = make_config(backends, max_artifact_bytes=64 * 1024, body_idle_timeout_seconds=2)
    with ServerThread(create_app(config)) as running:
        yield running


PROJECT = "fuzz-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def lease_token(server: ServerThread) -> str:
    from tests.helpers import SCHEDULER

    body = json.dumps(
        {"run_id": "fuzz", "step_id": "s", "job_id": "j", "attempt": 1, "worker_session_id": "w"}
    ).encode()
    status, answer = request(
        server.port,
        "POST",
        f"/v1/projects/{PROJECT}/claims",
        body,
        {**SCHEDULER, "Content-Type": "application/json"},
    )
    assert status == 201, answer
    token: str = json.loads(answer)["lease_token"]
    return token


part_names = st.sampled_from(
    ["file", "name", "description", "metadata", "derived_from", "run_id", "other", ""]
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
payloads = st.binary(max_size=2048) | st.sampled_from(
    [b"", b"--" + BOUNDARY.encode(), b"\r\n--" + BOUNDARY.encode() + b"--", b'{"a": 1}', b"[]"]
)


@st.composite
def parts(draw: st.DrawFn) -> bytes:
    name = draw(part_names)
    disposition = f'form-data; name="{name}"'
    if draw(st.booleans()):
        disposition += f'; filename="{draw(header_values).replace(chr(34), "")}"'
    headers = [f"Content-Disposition: {disposition}"]
    if draw(st.booleans()):
        headers.append(f"Content-Type: {draw(header_values)}")
    if draw(st.booleans()):
        headers.append(
            f"{draw(st.sampled_from(['Content-Encoding', 'X-Extra']))}: {draw(header_values)}"
        )
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + draw(payloads)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    chunks = draw(st.lists(parts(), max_size=6))
    body = b"".join(b"--" + BOUNDARY.encode() + b"\r\n" + c + b"\r\n" for c in chunks)
    if draw(st.booleans()):
        body += b"--" + BOUNDARY.encode() + b"--\r\n"
    if draw(st.booleans()):
        body = draw(st.binary(max_size=64)) + body  # preamble, or garbage
    return body


@given(body=bodies())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_body_gets_a_documented_answer(
    server: ServerThread, lease_token: str, body: bytes
) -> None:
    status, answer = request(
        server.port,
        "POST",
        f"/v1/projects/{PROJECT}/artifacts",
        body,
        {
            "X-Mobius-Lease-Token": lease_token,
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
    )
    assert status in DOCUMENTED, answer[:300]
    if status == 201:
        CREATED.add(json.loads(answer)["id"])
    else:
        assert json.loads(answer)["code"]


def test_fuzzing_left_only_successful_publishes(server: ServerThread, backends) -> None:
    async def check() -> None:
        conn = await asyncpg.connect(backends.database_url)
        try:
            count = await conn.fetchval(
                "SELECT count(*) FROM artifacts WHERE project_id=$1", PROJECT
            )
            used = await conn.fetchval(
                "SELECT used_bytes FROM projects WHERE project_id=$1", PROJECT
            )
            total = await conn.fetchval(
                "SELECT coalesce(sum(size), 0) FROM artifacts WHERE project_id=$1", PROJECT
            )
            pending = await conn.fetchval(
                "SELECT count(*) FROM pending_uploads WHERE project_id=$1", PROJECT
            )
        finally:
            await conn.close()
        assert (used or 0) == total
        assert pending == 0
        assert count == len(CREATED)

    server.call(check())
