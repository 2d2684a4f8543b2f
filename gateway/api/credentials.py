"""Who is calling: principal tokens (``Authorization: Bearer``) and lease tokens.

A lease token (``X-Mobius-Lease-Token``) authenticates the worker executing a
claim; its claim row supplies every lineage field. A request carrying both kinds
of credential on the publish route is treated as a lease publish.
"""

from __future__ import annotations

import time

from aiohttp import web

import leases
from gateway import metrics
from gateway.api.state import CLAIM_CACHE, DB, LEASE_TOKENS, PRINCIPALS, context
from gateway.auth import Principal
from gateway.errors import NotFound, Unauthenticated
from gateway.logs import get_logger
from gateway.publish import Publisher
from gateway.visibility import Viewer

LEASE_HEADER = "X-Mobius-Lease-Token"
log = get_logger("gateway.credentials")


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer <token>'")
    return token.strip()


def principal_of(request: web.Request) -> Principal:
    """The verified principal of the request; 401 without a valid token."""
    ctx = context(request)
    if ctx.principal is not None:
        return ctx.principal
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("a bearer token is required")
    principal = request.app[PRINCIPALS].verify(token)
    ctx.principal = principal
    return principal


def member_of(request: web.Request, project: str, scope: str) -> Principal:
    """A principal of ``project`` holding ``scope``, for routes that read a project.

    A principal outside the project gets the same ``404`` on every such route
    (listing, an artifact, its content, quota, events), so neither project nor
    artifact ids can be probed; a member lacking the scope gets ``403``.
    """
    principal = principal_of(request)
    if not principal.in_project(project):
        raise NotFound("not found")
    principal.require(project, scope)
    return principal


def reader_of(request: web.Request, project: str) -> Principal:
    """A principal who may read in ``project`` (``artifacts:read``); see :func:`member_of`."""
    return member_of(request, project, "artifacts:read")


def require(request: web.Request, project: str, scope: str) -> Principal:
    principal = principal_of(request)
    principal.require(project, scope)
    return principal


_LEASE_OUTCOMES: dict[type[Exception], str] = {
    leases.LeaseTokenInvalid: "invalid_token",
    leases.LeaseSuperseded: "superseded",
    leases.LeaseInactive: "inactive",
    leases.LeaseWrongProject: "wrong_project",
}


async def _verified_claim(request: web.Request, token: str, project: str) -> leases.Claim:
    """Verify the lease token and its claim, counting the outcome.

    A token seen recently with an active claim is answered from the process's
    :class:`~leases.ClaimCache` (see there why that is safe); otherwise its
    signature is checked and its claim read (one primary-key lookup).
    """
    cache = request.app[CLAIM_CACHE]
    try:
        claim = cache.get(token)
        if claim is not None:
            metrics.LEASE_CACHE_LOOKUPS.labels("hit").inc()
            context(request).lease_id = claim.lease_id
        else:
            if cache.enabled:
                metrics.LEASE_CACHE_LOOKUPS.labels("miss").inc()
            since = cache.version
            claims = request.app[LEASE_TOKENS].verify(token)
            context(request).lease_id = claims.lease_id
            claim = await leases.active_claim(request.app[DB], claims.lease_id)
            if claim.project != claims.project:
                raise leases.LeaseInactive(claims.lease_id, "unknown")
            token_left = claims.expires_at.timestamp() - time.time()
            cache.put(token, claim, valid_for=min(claim.seconds_left, token_left), since=since)
        claim.ensure_active(project)
    except leases.LeaseError as exc:
        outcome = _LEASE_OUTCOMES.get(type(exc), "rejected")
        metrics.LEASE_VERIFICATIONS.labels(outcome).inc()
        log.info("lease.rejected", reason=outcome, lease_id=context(request).lease_id)
        raise
    metrics.LEASE_VERIFICATIONS.labels("ok").inc()
    return claim


async def publisher_of(request: web.Request, project: str) -> Publisher:
    lease_token = request.headers.get(LEASE_HEADER)
    if lease_token is not None:
        claim = await _verified_claim(request, lease_token.strip(), project)
        lineage = claim.lineage
        return Publisher(
            owner_kind="run",
            owner_id=lineage.run_id,
            created_by=lineage.worker_session_id,
            credential=f"lease:{claim.lease_id}",
            viewer=Viewer(sub=None),
            lineage=lineage,
            lease_id=claim.lease_id,
        )
    principal = require(request, project, "artifacts:write")
    return Publisher(
        owner_kind=principal.owner_kind,
        owner_id=principal.sub,
        created_by=principal.sub,
        credential=f"principal:{principal.sub}",
        viewer=Viewer.of(principal),
    )
