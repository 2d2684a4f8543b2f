"""``/healthz`` (the process is up) and ``/readyz`` (Postgres and object storage answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiohttp import web

from gateway.api.bodies import json_response
from gateway.api.state import CONFIG, DB, STORE
from gateway.errors import Unavailable

READY_TIMEOUT_SECONDS = 2.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _check(name: str, probe: Awaitable[object]) -> tuple[str, str]:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await probe
    except Exception as exc:
        return name, f"failed: {type(exc).__name__}"
    return name, "ok"


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    timeout = min(READY_TIMEOUT_SECONDS, app[CONFIG].backend_timeout_seconds)
    checks = dict(
        await asyncio.gather(
            _check("postgres", app[DB].fetchval("SELECT 1", timeout=timeout)),
            _check("object_storage", app[STORE].ping()),
        )
    )
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        raise Unavailable(f"not ready: {', '.join(failing)}", extra={"checks": checks})
    return json_response({"status": "ready", "checks": checks})
