"""API errors: the contract's statuses and stable codes, free of any web framework.

Use-cases and handlers raise these; errors of ``leases``, ``storage`` and the
database driver are translated once, by :func:`api_error_for`. The error
middleware (:mod:`gateway.api.problems`) is the only place that renders one as
an RFC 9457 problem+json response. docs/api.md tables the codes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

import leases
import storage

PROBLEM_BASE = "https://mobius.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class ApiError(Exception):
    """An error with a place in the contract: status, stable code, title."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal server error"
    #: Headers every answer of this error carries (e.g. ``WWW-Authenticate`` on a 401).
    default_headers: Mapping[str, str] = {}

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.headers = {**self.default_headers, **(headers or {})}
        self.extra = dict(extra or {})


def _error(
    status: int, code: str, title: str, headers: Mapping[str, str] | None = None
) -> type[ApiError]:
    return type(
        "".join(part.capitalize() for part in code.split("_")),
        (ApiError,),
        {"status": status, "code": code, "title": title, "default_headers": dict(headers or {})},
    )


#: The longest request path a problem echoes as its ``instance``.
MAX_INSTANCE = 512

#: RFC 9110 §11.6.1 and RFC 6750 §3: a 401 names the scheme it wants.
WWW_AUTHENTICATE = 'Bearer realm="artifact-gateway"'


InvalidRequest = _error(400, "invalid_request", "Invalid request")
LineageNotAllowed = _error(400, "lineage_not_allowed", "Lineage is derived from the lease")
Unauthenticated = _error(
    401, "unauthenticated", "Authentication required", {"WWW-Authenticate": WWW_AUTHENTICATE}
)
LeaseInactive = _error(403, "lease_inactive", "Lease is not active")
LeaseSuperseded = _error(403, "lease_superseded", "Lease was superseded by a newer attempt")
Forbidden = _error(403, "forbidden", "Forbidden")
SignatureInvalid = _error(403, "signature_invalid", "Signed URL is not valid")
NotFound = _error(404, "not_found", "Not found")
MethodNotAllowed = _error(405, "method_not_allowed", "Method not allowed")
BodyTooSlow = _error(408, "body_too_slow", "Request body arrived too slowly")
IdempotencyConflict = _error(409, "idempotency_conflict", "Idempotency-Key reused")
ClaimConflict = _error(409, "claim_conflict", "A newer attempt of this job exists")
ArtifactDeleted = _error(410, "artifact_deleted", "Artifact was deleted")
EventsExpired = _error(410, "events_expired", "Events after this cursor are no longer kept")
ExpectationFailed = _error(417, "expectation_failed", "Expectation failed")
ClientClosed = _error(499, "client_closed", "Client closed the request")
ArtifactTooLarge = _error(413, "artifact_too_large", "Artifact too large")
QuotaExceeded = _error(413, "quota_exceeded", "Project quota exceeded")
UnsupportedMediaType = _error(415, "unsupported_media_type", "Unsupported media type")
UnsupportedContentEncoding = _error(
    415, "unsupported_content_encoding", "Unsupported content encoding"
)
RangeNotSatisfiable = _error(416, "range_not_satisfiable", "Range not satisfiable")
RateLimited = _error(429, "rate_limited", "Too many requests")
Unavailable = _error(503, "unavailable", "Service unavailable")
InternalError = _error(500, "internal_error", "Internal server error")


@dataclass(frozen=True, kw_only=True)
class Problem:
    status: int
    code: str
    title: str
    detail: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def body(self, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code.replace("_", "-"),
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "request_id": request_id,
        }
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra)
        return body

    @classmethod
    def of(cls, exc: ApiError) -> Problem:
        return cls(
            status=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            headers=exc.headers,
            extra=exc.extra,
        )


#: Driver errors of a connection that broke: a restart, a failover, a lost
#: socket, a connection left mid-operation by a cancelled query. Besides the
#: 503, these replace the pool's connections (every one is likely broken alike).
#: SQLSTATE class 08 (connection), an administrator's or a crash's shutdown, and
#: asyncpg's own client-side states.
DB_BROKEN_CONNECTION: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)
#: Every driver error of a database that cannot serve now, each ``503
#: unavailable`` with ``Retry-After``; nothing was written (a publish's commit is
#: one statement). Beyond a broken connection: SQLSTATE classes 53 (insufficient
#: resources: too many connections, disk full), 57 (operator intervention:
#: cannot connect now, statement cancelled) and 58 (system error) — these leave
#: the pool's healthy connections alone.
DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    *DB_BROKEN_CONNECTION,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.PostgresSystemError,
)
#: How long a client should wait before retrying after a backend error.
BACKEND_RETRY_AFTER_SECONDS = 2


def api_error_for(exc: BaseException) -> ApiError | None:
    """The contract's error for a domain or driver error; None for an unexpected one.

    Errors of :mod:`leases`, :mod:`storage` and the database driver are translated
    here, once; :func:`gateway.api.problems.problem_for` renders the result.
    """
    if isinstance(exc, ApiError):
        return exc
    api: ApiError | None = None
    if isinstance(exc, leases.LeaseTokenInvalid):
        api = Unauthenticated(f"lease token rejected: {exc.reason}")
    elif isinstance(exc, leases.LeaseSuperseded):
        api = LeaseSuperseded(str(exc))
    elif isinstance(exc, leases.LeaseInactive):
        api = LeaseInactive(str(exc))
    elif isinstance(exc, leases.LeaseWrongProject):
        api = Forbidden("the lease belongs to another project")
    elif isinstance(exc, leases.ClaimNotFound):
        api = NotFound(str(exc))
    elif isinstance(exc, leases.ClaimConflict):
        api = ClaimConflict(str(exc), extra={"existing_attempt": exc.existing_attempt})
    elif isinstance(exc, storage.EntityTooLarge):
        api = ArtifactTooLarge(f"the artifact exceeds the maximum of {exc.limit} bytes")
    elif isinstance(exc, storage.RangeNotSatisfiable):
        headers = {"Content-Range": f"bytes */{exc.size}"} if exc.size is not None else {}
        api = RangeNotSatisfiable("the requested range is outside the artifact", headers=headers)
    elif isinstance(exc, storage.UploadTooSlow):
        api = BodyTooSlow(
            f"the body did not fill an upload buffer within {exc.fill_seconds:g} seconds "
            "while other uploads waited, and the memory kept for slow uploads is in use; "
            "nothing was published",
            headers={"Connection": "close"},
        )
    elif isinstance(exc, storage.StorageBusy):
        whose = "this credential's share of the" if exc.own_share else "the"
        api = Unavailable(
            f"{whose} upload buffers stayed in use for {exc.waited:g} seconds; "
            "nothing was published, retry later",
            headers={"Retry-After": str(max(1, math.ceil(exc.waited)))},
        )
    elif isinstance(exc, storage.ObjectNotFound):
        api = NotFound("the artifact's content is missing from object storage")
    elif isinstance(exc, storage.StorageUnavailable):
        api = Unavailable(
            "object storage is unavailable; nothing was published",
            headers={"Retry-After": str(BACKEND_RETRY_AFTER_SECONDS)},
        )
    elif isinstance(exc, storage.StorageError):
        api = Unavailable(
            "object storage failed the request; nothing was published",
            headers={"Retry-After": str(BACKEND_RETRY_AFTER_SECONDS)},
        )
    elif isinstance(exc, DB_UNAVAILABLE):
        api = Unavailable(
            "the database is unavailable or restarting; nothing was published, retry later",
            headers={"Retry-After": str(BACKEND_RETRY_AFTER_SECONDS)},
        )
    return api
