"""Client-side errors, one class per stable ``code`` of the gateway's problem+json answers.

Every error carries what the gateway said: ``code`` (stable, machine-readable),
``status`` (the HTTP status, ``None`` when the error arose in the client, e.g. a
digest mismatch or an unreachable gateway), ``detail`` (human-readable) and
``request_id`` (quote it when reporting a problem). :func:`error_for` maps a
problem body to the most specific class; an unknown code becomes the base
:class:`ArtifactError` with the code preserved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final

_URL: Final = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>\\`]*")
REDACTED: Final = "***"


def _redact_url(match: re.Match[str]) -> str:
    url = match.group()
    scheme, _, rest = url.partition("://")
    # Everything up to the last "@" may be credentials (a password can hold an "@",
    # a "/" or a "?" left unescaped): hide it all rather than guess where it ends.
    if "@" in rest:
        rest = REDACTED + rest[rest.rindex("@") :]
    if "?" in rest:
        rest = rest[: rest.index("?")] + "?" + REDACTED
    return f"{scheme}://{rest}"


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it hidden: its userinfo
    (``user:password@``) and its query string (a signed URL's signature, a token)
    become ``***``. Every error message and log line of the client passes through it.
    """
    if "://" not in text:
        return text
    return _URL.sub(_redact_url, text)


class ArtifactError(Exception):
    """Base class of every error the client raises about the gateway or an artifact."""

    default_code: ClassVar[str] = "error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        title: str | None = None,
    ) -> None:
        detail = redact(detail)
        self.code = code or self.default_code
        self.status = status
        self.detail = detail
        self.request_id = request_id
        self.title = title
        super().__init__(f"{self.code}: {detail}")

    def as_dict(self) -> dict[str, Any]:
        """The error as a problem-like mapping (for logs and JSON output)."""
        return {
            "code": self.code,
            "status": self.status,
            "detail": self.detail,
            "request_id": self.request_id,
        }


class ConfigurationError(ArtifactError):
    """The client is missing its URL, project or credential, or one of them is malformed."""

    default_code = "configuration_error"


class InvalidRequest(ArtifactError):
    """400: malformed request (bad multipart, bad JSON, bad query value)."""

    default_code = "invalid_request"


class LineageNotAllowed(InvalidRequest):
    """400: the request named a lineage field; lineage always comes from the lease."""

    default_code = "lineage_not_allowed"


class Unauthenticated(ArtifactError):
    """401: no credential, or one that does not verify (signature, expiry, audience)."""

    default_code = "unauthenticated"


class Forbidden(ArtifactError):
    """403: the credential lacks the scope, or the lease belongs to another project."""

    default_code = "forbidden"


class LeaseInactive(Forbidden):
    """403: the lease's claim is released, expired or unknown."""

    default_code = "lease_inactive"


class LeaseSuperseded(Forbidden):
    """403: a newer attempt of the same job holds the active claim."""

    default_code = "lease_superseded"


class SignatureInvalid(Forbidden):
    """403: a signed URL was altered, expired, revoked or signed by a retired key."""

    default_code = "signature_invalid"


class NotFound(ArtifactError):
    """404: unknown artifact, or one this principal may not see."""

    default_code = "not_found"


class IdempotencyConflict(ArtifactError):
    """409: the same ``Idempotency-Key`` was used with a different body."""

    default_code = "idempotency_conflict"


class ArtifactDeleted(ArtifactError):
    """410: the artifact was deleted; only its tombstone remains."""

    default_code = "artifact_deleted"


class ArtifactTooLarge(ArtifactError):
    """413: the artifact exceeds the gateway's maximum artifact size."""

    default_code = "artifact_too_large"


class QuotaExceeded(ArtifactError):
    """413: the artifact does not fit in the project's remaining quota."""

    default_code = "quota_exceeded"


class Unavailable(ArtifactError):
    """The gateway stayed unreachable or answered 429/502/503/504 through every retry."""

    default_code = "unavailable"


class DigestMismatch(ArtifactError):
    """Downloaded (or uploaded) bytes do not hash to the sha256 the gateway recorded."""

    default_code = "digest_mismatch"


ERRORS_BY_CODE: Mapping[str, type[ArtifactError]] = {
    cls.default_code: cls
    for cls in (
        InvalidRequest,
        LineageNotAllowed,
        Unauthenticated,
        Forbidden,
        LeaseInactive,
        LeaseSuperseded,
        SignatureInvalid,
        NotFound,
        IdempotencyConflict,
        ArtifactDeleted,
        ArtifactTooLarge,
        QuotaExceeded,
        Unavailable,
    )
}

# When an answer has no (known) code, e.g. from a proxy in front of the gateway.
ERRORS_BY_STATUS: Mapping[int, type[ArtifactError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: IdempotencyConflict,
    410: ArtifactDeleted,
    413: ArtifactTooLarge,
    503: Unavailable,
}


def error_for(
    status: int,
    body: Mapping[str, Any] | None,
    *,
    reason: str | None = None,
    request_id: str | None = None,
) -> ArtifactError:
    """The error for an HTTP answer, from its problem+json body when it has one."""
    body = body or {}
    code = body.get("code")
    code = code if isinstance(code, str) and code else None
    detail = body.get("detail") or body.get("title") or f"HTTP {status} {reason or ''}".strip()
    rid = body.get("request_id")
    if code is not None:  # an unknown code keeps its own name on the base class
        cls = ERRORS_BY_CODE.get(code, ArtifactError)
    else:
        cls = ERRORS_BY_STATUS.get(status, ArtifactError)
    return cls(
        str(detail),
        code=code or (cls.default_code if cls is not ArtifactError else f"http_{status}"),
        status=status,
        request_id=rid if isinstance(rid, str) else request_id,
        title=body.get("title") if isinstance(body.get("title"), str) else None,
    )
