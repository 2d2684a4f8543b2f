"""Small helpers shared by integration tests."""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.conftest import ALL_SCOPES, bearer, principal_token

SCHEDULER = bearer(principal_token("svc:scheduler", "claims:write"))
ADMIN = bearer(principal_token("user:admin", ALL_SCOPES))
READER = bearer(principal_token("user:reader", "artifacts:read"))


async def new_claim(client: Any, project: str, **over: Any) -> dict[str, Any]:
    body = {
        "run_id": "run_" + secrets.token_hex(3),
        "step_id": "build",
        "job_id": "job_" + secrets.token_hex(3),
        "attempt": 1,
        "worker_session_id": "ws_" + secrets.token_hex(3),
        "session_id": "sess_1",
        "ttl_seconds": 600,
    }
    body.update(over)
    resp = await client.post(f"/v1/projects/{project}/claims", json=body, headers=SCHEDULER)
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    data["request"] = body
    return data


def lease(claim: dict[str, Any]) -> dict[str, str]:
    return {"X-Mobius-Lease-Token": claim["lease_token"]}


def form(
    data: bytes | Any = b"hello world\n",
    *,
    filename: str = "hello.txt",
    content_type: str | None = "text/plain",
    **fields: str,
) -> aiohttp.FormData:
    fd = aiohttp.FormData(default_to_multipart=True)
    for key, value in fields.items():
        fd.add_field(key, value)
    if isinstance(data, bytes) and len(data) > 64 * 1024:
        data = io.BytesIO(data)  # aiohttp streams file objects; large bytes would block
    fd.add_field("file", data, filename=filename, content_type=content_type)
    return fd


async def publish(
    client: Any, project: str, headers: dict[str, str], data: Any = None, **kw: Any
) -> Any:
    body = form(data if data is not None else b"hello world\n", **kw)
    return await client.post(f"/v1/projects/{project}/artifacts", data=body, headers=headers)


async def quota(client: Any, project: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/projects/{project}/artifacts/quota", headers=ADMIN)
    assert resp.status == 200
    result: dict[str, Any] = await resp.json()
    return result


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true, polling every 20 ms; TimeoutError after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)
