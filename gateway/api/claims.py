"""Claims — the scheduler's side: register, renew and release job claims."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

import leases
from gateway.api.bodies import json_response, read_json_object
from gateway.api.credentials import require
from gateway.api.params import lease_id_of, project_of
from gateway.api.state import CONFIG, DB, LEASE_TOKENS, context
from gateway.jsonio import field_int, field_str, rfc3339
from gateway.logs import get_logger

log = get_logger("gateway.claims")


async def create_claim(request: web.Request) -> web.Response:
    project = project_of(request)
    principal = require(request, project, "claims:write")
    body = await read_json_object(request)
    config = request.app[CONFIG]
    lineage = leases.Lineage(
        run_id=field_str(body, "run_id") or "",
        step_id=field_str(body, "step_id") or "",
        job_id=field_str(body, "job_id") or "",
        attempt=field_int(body, "attempt", low=1, high=leases.MAX_ATTEMPT),
        worker_session_id=field_str(body, "worker_session_id") or "",
        session_id=field_str(body, "session_id", required=False),
    )
    ttl = field_int(
        body,
        "ttl_seconds",
        default=min(leases.DEFAULT_TTL_SECONDS, config.lease_max_ttl_seconds),
        low=1,
        high=config.lease_max_ttl_seconds,
    )
    async with request.app[DB].acquire() as conn:
        claim, superseded = await leases.register_claim(
            conn,
            project=project,
            lineage=lineage,
            ttl_seconds=ttl,
            max_ttl_seconds=config.lease_max_ttl_seconds,
            created_by=principal.sub,
        )
    token, token_expires_at = request.app[LEASE_TOKENS].mint(
        lease_id=claim.lease_id, project=project, worker_session_id=lineage.worker_session_id
    )
    context(request).lease_id = claim.lease_id
    log.info(
        "claim.registered",
        project=project,
        lease_id=claim.lease_id,
        attempt=lineage.attempt,
        superseded=superseded.lease_id if superseded else None,
    )
    return json_response(
        {
            "lease_id": claim.lease_id,
            "lease_token": token,
            "expires_at": rfc3339(claim.expires_at),
            "token_expires_at": rfc3339(token_expires_at),
            "superseded": superseded.lease_id if superseded else None,
        },
        status=201,
        # From validated ids, and quoted anyway: a header value never carries CR or LF.
        headers={
            "Location": f"/v1/projects/{quote(project, safe='')}/claims/"
            f"{quote(claim.lease_id, safe=':')}"
        },
    )


async def renew_claim(request: web.Request) -> web.Response:
    project = project_of(request)
    require(request, project, "claims:write")
    lease_id = lease_id_of(request)
    body = await read_json_object(request, optional=True)
    config = request.app[CONFIG]
    ttl = field_int(
        body,
        "ttl_seconds",
        default=min(leases.DEFAULT_TTL_SECONDS, config.lease_max_ttl_seconds),
        low=1,
        high=config.lease_max_ttl_seconds,
    )
    claim = await leases.renew_claim(request.app[DB], project, lease_id, ttl)
    return json_response({"lease_id": claim.lease_id, "expires_at": rfc3339(claim.expires_at)})


async def release_claim(request: web.Request) -> web.Response:
    project = project_of(request)
    require(request, project, "claims:write")
    lease_id = lease_id_of(request)
    claim = await leases.release_claim(request.app[DB], project, lease_id)
    log.info("claim.released", project=project, lease_id=lease_id, state=claim.state)
    return web.Response(status=204)
