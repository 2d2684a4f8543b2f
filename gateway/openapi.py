"""The OpenAPI 3.1 document of the v1 API, served at ``GET /v1/openapi.json``.

Built as data here so that a test can hold it against the live router: every
route is documented and every documented route exists.
"""

from __future__ import annotations

import json
import re
from typing import Any

import leases
from gateway import __version__, problem_docs, signing
from gateway.artifacts import INCLUDED_CONTENT_BYTES
from gateway.config import Config
from gateway.db.artifacts import LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT, MIME_CLASSES
from gateway.db.projects import MAX_LIMIT, QUOTA_LIMITS
from gateway.errors import MAX_INSTANCE, PROBLEM_BASE, WWW_AUTHENTICATE
from gateway.events import DEFAULT_LIMIT as EVENTS_DEFAULT_LIMIT
from gateway.events import EVENT_TYPES, STREAM_END_REASONS
from gateway.events import MAX_LIMIT as EVENTS_MAX_LIMIT
from gateway.ids import ARTIFACT_ID, ARTIFACT_TYPE, LEASE_ID, PROJECT_ID
from gateway.jsonio import MAX_FIELD_CHARS, MAX_JSON_DEPTH
from gateway.names import MAX_NAME_CHARS
from gateway.publish import DEFAULT_JSON_MIME, MAX_DERIVED_FROM, MAX_IDEMPOTENCY_KEY, PART_CAPS

JSON = "application/json"
PROBLEM = "application/problem+json"
OCTET_STREAM = "application/octet-stream"
HTML = "text/html"
BINARY = {"type": "string", "format": "binary"}


def _anchored(pattern: re.Pattern[str]) -> str:
    """A pattern the code matches whole (``fullmatch``) as a JSON Schema pattern."""
    return f"^{pattern.pattern}$"


def _mib(size: int) -> str:
    return f"{size / 1024**2:g} MiB" if size >= 1024**2 else f"{size / 1024:g} KiB"


PROJECT_PATTERN = {"type": "string", "pattern": _anchored(PROJECT_ID)}
ARTIFACT_ID_SCHEMA = {"type": "string", "pattern": _anchored(ARTIFACT_ID)}
ARTIFACT_TYPE_PATTERN = _anchored(ARTIFACT_TYPE)

# The values the examples share: one artifact, as published, read and listed.
EXAMPLE_PROJECT = "demo"
EXAMPLE_ARTIFACT_ID = "art_01JD3K7Q9ZB4M2X8N6V5T1R0PA"
EXAMPLE_LEASE_ID = "lse_01JD3K6XG1V3W5Y7Z9B1C3D5E7"
EXAMPLE_BYTES = "# Report\n"
EXAMPLE_SHA256 = "497b7725a00101d6cf82489ef502fb0918962b10aaa7279962ab5ec3edc62533"
EXAMPLE_DIGEST = "sha-256=:SXt3JaABAdbPgkie9QL7CRiWKxCqpyeZYqtew+3GJTM=:"
EXAMPLE_TIME = "2026-01-15T10:00:00Z"
EXAMPLE_EXPIRY = "2026-01-15T11:00:00Z"
EXAMPLE_LINEAGE = {
    "run_id": "run_42",
    "step_id": "step_1",
    "job_id": "job_7",
    "attempt": 1,
    "worker_session_id": "ws_1",
    "session_id": None,
}
EXAMPLE_REF = {
    "type": "artifact",
    "id": EXAMPLE_ARTIFACT_ID,
    "name": "report.md",
    "mime": "text/markdown",
    "size": len(EXAMPLE_BYTES),
    "sha256": EXAMPLE_SHA256,
}
EXAMPLE_ARTIFACT = {
    **EXAMPLE_REF,
    "project": EXAMPLE_PROJECT,
    "state": "available",
    "created_at": EXAMPLE_TIME,
    "deleted_at": None,
    "owner": {"kind": "run", "id": "run_42"},
    "lineage": EXAMPLE_LINEAGE,
    "created_by": "svc:scheduler",
    "description": "the nightly report",
    "metadata": {"rows": 120},
    "derived_from": [],
    "artifact_type": "report",
}
EXAMPLE_EVENT = {
    "seq": 41,
    "type": "artifact.created",
    "artifact": EXAMPLE_ARTIFACT,
    "at": EXAMPLE_TIME,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(
    schema: dict[str, Any],
    description: str,
    example: Any,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": schema, "example": example}},
    }
    if headers:
        response["headers"] = headers
    return response


def _header(description: str, example: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "required": True,
        "schema": schema or {"type": "string"},
        "example": example,
    }


def _location(what: str, example: str) -> dict[str, Any]:
    return {"Location": _header(f"the path of the {what}", example)}


_ETAG = {
    "ETag": _header("the strong validator: the content's sha256, quoted", f'"{EXAMPLE_SHA256}"')
}
# Every content answer (200, 206, 304; GET and HEAD; by token or signed URL).
_CONTENT_HEADERS = {
    **_ETAG,
    "Repr-Digest": _header(
        "RFC 9530: the sha-256 of the whole content (not of the range sent)", EXAMPLE_DIGEST
    ),
    "Content-Disposition": _header(
        "inline or attachment, with the artifact's name (RFC 6266; filename* for non-ASCII)",
        'inline; filename="report.md"',
    ),
    "Accept-Ranges": _header("one byte range may be asked for", "bytes", {"const": "bytes"}),
}


def _bytes(description: str, headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": (
            f"{description}. Served as the artifact's own media type, or as "
            "text/plain; charset=utf-8 or application/octet-stream under the serving policy: "
            "any media type may arrive"
        ),
        "headers": headers,
        "content": {
            OCTET_STREAM: {"schema": BINARY, "example": EXAMPLE_BYTES},
            "*/*": {"schema": BINARY, "example": EXAMPLE_BYTES},
        },
    }


def _html(description: str, example: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {HTML: {"schema": {"type": "string"}, "example": example}},
    }


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/Problem{status}"} for status in statuses}


_RETRY_AFTER = {
    "description": "seconds to wait before retrying",
    "schema": {"type": "integer", "minimum": 1},
}
_PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "headers": {
            "WWW-Authenticate": {
                "description": f"always `{WWW_AUTHENTICATE}`",
                "schema": {"type": "string"},
            }
        }
    },
    415: {
        "headers": {
            "Accept-Encoding": {
                "description": "`identity` when the body carried a Content-Encoding",
                "schema": {"type": "string"},
            }
        }
    },
    416: {
        "headers": {
            "Content-Range": {
                "description": "`bytes */<size>`: the artifact's size",
                "schema": {"type": "string"},
                "example": "bytes */9",
            }
        }
    },
    429: {"headers": {"Retry-After": {**_RETRY_AFTER, "required": True}}},
    503: {"headers": {"Retry-After": _RETRY_AFTER}},
}

_PROBLEM_TEXT = {
    400: "invalid_request or lineage_not_allowed",
    401: "unauthenticated",
    403: "forbidden, lease_inactive, lease_superseded or signature_invalid",
    404: "not_found (also for artifacts of other projects and invisible ones)",
    408: "body_too_slow: the request body arrived below the minimum rate, or too slowly to "
    "fill an upload buffer while other uploads waited and the memory kept for slow uploads "
    "was in use",
    409: "idempotency_conflict or claim_conflict",
    410: "artifact_deleted (content, signed URL, or an Idempotency-Key replay of a deleted "
    "artifact); events_expired (an events cursor below the oldest event kept)",
    417: "expectation_failed: an Expect other than 100-continue",
    413: "artifact_too_large or quota_exceeded",
    415: "unsupported_media_type: a publish that is not multipart/form-data, a JSON body "
    "sent as another type; unsupported_content_encoding: a request body with a "
    "Content-Encoding other than identity (the answer carries Accept-Encoding: identity)",
    416: "range_not_satisfiable",
    429: "rate_limited: too many signed-URL mints, or too many concurrent event streams, "
    "for the principal (or the project) on this replica (Retry-After)",
    503: "unavailable: Postgres or object storage is unreachable, or no upload buffer came free",
}

_STREAM_DESCRIPTION = (
    "With `Accept: text/event-stream` the events stream live as server-sent events "
    "(`id: <seq>`, `event: <type>`, `data: <the event as JSON>`), resuming after "
    "`Last-Event-ID`. A stream never outlives its token: at the token's expiry (its `exp` "
    "plus the verification leeway) the stream ends with a final `event: error` (no `id`) "
    "whose data is a problem document (`type`, `title`, `code`, `detail`); codes: "
    + ", ".join(f"`{code}` ({detail})" for code, (_, detail) in STREAM_END_REASONS.items())
    + ". A process shutting down ends its streams without it. Each replica admits at most "
    f"{Config.event_streams_per_principal} concurrent streams per principal and "
    f"{Config.event_streams_per_project} per project by default "
    "(GATEWAY_EVENT_STREAMS_PER_PRINCIPAL, GATEWAY_EVENT_STREAMS_PER_PROJECT); beyond, "
    "`429 rate_limited` with `Retry-After`."
)

_PROJECT = {
    "name": "project",
    "in": "path",
    "required": True,
    "schema": PROJECT_PATTERN,
    "example": EXAMPLE_PROJECT,
}
_ARTIFACT = {
    "name": "artifact_id",
    "in": "path",
    "required": True,
    "schema": ARTIFACT_ID_SCHEMA,
    "example": EXAMPLE_ARTIFACT_ID,
}
_LEASE = {
    "name": "lease_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": _anchored(LEASE_ID)},
    "example": EXAMPLE_LEASE_ID,
}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


# 1-MAX_FIELD_CHARS characters, no control characters (what the claim handler accepts)
_LINEAGE_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_FIELD_CHARS,
    "pattern": "^[^\\x00-\\x1f\\x7f]+$",
}
_TTL = {
    "type": "integer",
    "minimum": 1,
    "default": leases.DEFAULT_TTL_SECONDS,
    "description": "seconds; at most GATEWAY_LEASE_MAX_TTL_SECONDS "
    f"(default {Config.lease_max_ttl_seconds})",
}

_DESCRIPTION_FIELD = {
    "type": ["string", "null"],
    "maxLength": PART_CAPS["description"],
    "description": f"at most {PART_CAPS['description']} bytes of UTF-8; tabs and line "
    "breaks, no other control character",
}
_METADATA_TEXT = (
    f"a JSON object, at most {_mib(PART_CAPS['metadata'])} encoded and {MAX_JSON_DEPTH} "
    "levels deep; no NaN/Infinity, NUL or lone surrogates"
)

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "code", "request_id"],
        "properties": {
            "type": {
                "type": "string",
                "format": "uri",
                "description": f"`{PROBLEM_BASE}<code with dashes>`; every gateway serves "
                f"its documentation at `{problem_docs.PAGE_PATH}/<code with dashes>` "
                f"(all of them: `GET {problem_docs.PAGE_PATH}`)",
            },
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "code": {"type": "string", "description": "stable; see the `type`'s documentation"},
            "detail": {"type": "string"},
            "request_id": {"type": "string"},
            "instance": {
                "type": "string",
                "description": "the path of the request that failed (never its query; "
                f"absent when the path is longer than {MAX_INSTANCE} characters)",
            },
        },
    },
    "ArtifactRef": {
        "type": "object",
        "required": ["type", "id", "name", "mime", "size", "sha256"],
        "properties": {
            "type": {"const": "artifact"},
            "id": ARTIFACT_ID_SCHEMA,
            "name": {"type": "string"},
            "mime": {"type": "string"},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    },
    "Lineage": {
        "type": "object",
        "required": ["run_id", "step_id", "job_id", "attempt", "worker_session_id", "session_id"],
        "properties": {
            "run_id": {"type": "string"},
            "step_id": {"type": "string"},
            "job_id": {"type": "string"},
            "attempt": {"type": "integer", "minimum": 1},
            "worker_session_id": {"type": "string"},
            "session_id": {"type": ["string", "null"]},
        },
    },
    "Artifact": {
        "type": "object",
        "required": [
            "type",
            "id",
            "project",
            "name",
            "mime",
            "size",
            "sha256",
            "state",
            "created_at",
            "deleted_at",
            "owner",
            "lineage",
            "created_by",
            "description",
            "metadata",
            "derived_from",
        ],
        "properties": {
            "type": {"const": "artifact"},
            "id": {"type": "string"},
            "project": {"type": "string"},
            "name": {"type": "string"},
            "mime": {"type": "string"},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "state": {"enum": ["available", "deleted"]},
            "created_at": {"type": "string", "format": "date-time"},
            "deleted_at": {"type": ["string", "null"], "format": "date-time"},
            "owner": {
                "type": "object",
                "required": ["kind", "id"],
                "properties": {
                    "kind": {"enum": ["run", "user", "agent", "service"]},
                    "id": {"type": "string"},
                },
            },
            "lineage": {"oneOf": [_ref("Lineage"), {"type": "null"}]},
            "created_by": {"type": "string"},
            "description": {"type": ["string", "null"]},
            "metadata": {"type": "object"},
            "metadata_omitted": {
                "type": "string",
                "enum": ["unreadable"],
                "description": "present when stored metadata could not be served (it is "
                "then `{}`); rows written under today's input limits never have it",
            },
            "derived_from": {"type": "array", "items": {"type": "string"}},
            "artifact_type": {
                "type": ["string", "null"],
                "pattern": ARTIFACT_TYPE_PATTERN,
                "description": "an optional label: report, plan, dataset, log …",
            },
            "content": {
                "type": ["string", "null"],
                "description": "with ?include_content=true: the text of a text artifact "
                f"of at most {_mib(INCLUDED_CONTENT_BYTES)}",
            },
            "content_omitted": {
                "enum": ["binary", "too_large", "deleted"],
                "description": "with ?include_content=true: why `content` is null",
            },
        },
    },
    "JsonPublish": {
        "type": "object",
        "required": ["name", "content"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": MAX_NAME_CHARS},
            "content": {
                "type": "string",
                "description": "UTF-8 text, at most GATEWAY_MAX_JSON_CONTENT_BYTES "
                f"({_mib(Config.max_json_content_bytes)} by default) encoded; larger is "
                "413 artifact_too_large (use multipart)",
            },
            "mime": {"type": "string", "default": DEFAULT_JSON_MIME},
            "description": _DESCRIPTION_FIELD,
            "metadata": {"type": ["object", "null"], "description": _METADATA_TEXT},
            "derived_from": {
                "type": ["array", "null"],
                "maxItems": MAX_DERIVED_FROM,
                "items": ARTIFACT_ID_SCHEMA,
            },
            "artifact_type": {"type": ["string", "null"], "pattern": ARTIFACT_TYPE_PATTERN},
        },
    },
    "ArtifactList": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("Artifact")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Quota": {
        "type": "object",
        "required": ["project", "used_bytes", "limit_bytes", "artifact_count", "limit_artifacts"],
        "properties": {
            "project": {"type": "string"},
            "used_bytes": {"type": "integer"},
            "limit_bytes": {
                "type": "integer",
                "description": "bytes the live artifacts may use; when none is left, no "
                "publish fits, an empty file included",
            },
            "artifact_count": {"type": "integer"},
            "limit_artifacts": {
                "type": "integer",
                "description": "how many live artifacts the project may hold",
            },
        },
    },
    "ClaimRequest": {
        "type": "object",
        "required": ["run_id", "step_id", "job_id", "attempt", "worker_session_id"],
        "properties": {
            "run_id": _LINEAGE_ID,
            "step_id": _LINEAGE_ID,
            "job_id": _LINEAGE_ID,
            "attempt": {"type": "integer", "minimum": 1, "maximum": leases.MAX_ATTEMPT},
            "worker_session_id": _LINEAGE_ID,
            "session_id": _LINEAGE_ID,
            "ttl_seconds": _TTL,
        },
    },
    "Claim": {
        "type": "object",
        "required": ["lease_id", "lease_token", "expires_at"],
        "properties": {
            "lease_id": {"type": "string"},
            "lease_token": {"type": "string"},
            "expires_at": {"type": "string", "format": "date-time"},
            "token_expires_at": {"type": "string", "format": "date-time"},
            "superseded": {"type": ["string", "null"]},
        },
    },
    "ClaimRenewal": {
        "type": "object",
        "required": ["lease_id", "expires_at"],
        "properties": {
            "lease_id": {"type": "string"},
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
    "Event": {
        "type": "object",
        "required": ["seq", "type", "artifact", "at"],
        "properties": {
            "seq": {"type": "integer"},
            "type": {"enum": list(EVENT_TYPES)},
            "artifact": {"oneOf": [_ref("Artifact"), _ref("UnreadableArtifact")]},
            "at": {"type": "string", "format": "date-time"},
        },
    },
    "UnreadableArtifact": {
        "type": "object",
        "description": "an event's artifact whose stored document could not be served: "
        "only its id (rows written under today's input limits never are)",
        "required": ["type", "id", "payload_omitted"],
        "properties": {
            "type": {"const": "artifact"},
            "id": {"type": "string"},
            "payload_omitted": {"enum": ["unreadable"]},
            "metadata": {"type": "object"},
            "metadata_omitted": {"enum": ["unreadable"]},
        },
    },
    "EventPage": {
        "type": "object",
        "required": ["items", "next_after"],
        "properties": {
            "items": {"type": "array", "items": _ref("Event")},
            "next_after": {"type": "integer"},
        },
    },
    "SignedUrl": {
        "type": "object",
        "required": ["url", "expires_at"],
        "properties": {
            "url": {"type": "string"},
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
}


_EXAMPLE_CLAIM_REQUEST = {**EXAMPLE_LINEAGE, "ttl_seconds": leases.DEFAULT_TTL_SECONDS}
del _EXAMPLE_CLAIM_REQUEST["session_id"]
_EXAMPLE_PROBLEM_PAGE = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    "<title>Problem types</title>\n</head>\n<body>\n<h1>Problem types</h1>\n"
    '<section id="quota-exceeded">…</section>\n</body>\n</html>\n'
)


def _paths() -> dict[str, Any]:
    artifacts = "/v1/projects/{project}/artifacts"
    one = artifacts + "/{artifact_id}"
    content_responses = {
        "200": _bytes("the bytes", _CONTENT_HEADERS),
        "206": _bytes(
            "the requested range",
            {
                **_CONTENT_HEADERS,
                "Content-Range": _header("the range sent, and the size", "bytes 0-3/9"),
            },
        ),
        "304": {"description": "not modified (If-None-Match matched the ETag)", "headers": _ETAG},
        **_problems(401, 403, 404, 410, 416, 503),
    }
    content_params = [
        _PROJECT,
        _ARTIFACT,
        _query("exp", {"type": "string"}, "signed URL expiry (Unix seconds)"),
        _query("kid", {"type": "string"}, "signed URL key id"),
        _query("sig", {"type": "string"}, "signed URL signature"),
        {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}},
        {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
    ]
    list_params = [
        _PROJECT,
        _query("run_id", {"type": "string"}, "lineage filter"),
        _query("step_id", {"type": "string"}, "lineage filter"),
        _query("job_id", {"type": "string"}, "lineage filter"),
        _query("attempt", {"type": "integer", "minimum": 1}, "lineage filter"),
        _query("session_id", {"type": "string"}, "lineage filter"),
        _query("owner", {"type": "string"}, "kind:id — user:alice, agent:x, run:run_42"),
        _query("mime_class", {"enum": list(MIME_CLASSES)}, "class"),
        _query("artifact_type", {"type": "string", "pattern": ARTIFACT_TYPE_PATTERN}, "label"),
        _query("name_prefix", {"type": "string"}, "names starting with this"),
        _query("include_deleted", {"enum": ["true", "false"]}, "include tombstones"),
        _query(
            "limit",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": LIST_MAX_LIMIT,
                "default": LIST_DEFAULT_LIMIT,
            },
            "page size",
        ),
        _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
    ]
    publish_form = {
        "type": "object",
        "required": ["file"],
        "additionalProperties": False,
        "properties": {
            "file": {
                **BINARY,
                "contentMediaType": OCTET_STREAM,
                "description": (
                    "the bytes; the part's filename is the artifact's name unless a `name` "
                    "part is sent, and its Content-Type the artifact's mime (absent or "
                    "application/octet-stream: guessed from the name)"
                ),
            },
            "name": {
                "type": "string",
                "maxLength": MAX_NAME_CHARS,
                "description": "display name (the last path component is kept)",
            },
            "description": {**_DESCRIPTION_FIELD, "type": "string"},
            "metadata": {"type": "object", "description": _METADATA_TEXT},
            # One part holding a JSON array: a string here, since generators send an array
            # property as repeated parts, which the gateway refuses.
            "derived_from": {
                "type": "string",
                "contentMediaType": JSON,
                "contentSchema": {
                    "type": "array",
                    "maxItems": MAX_DERIVED_FROM,
                    "items": ARTIFACT_ID_SCHEMA,
                },
                "description": (
                    "a JSON array of ids of artifacts of the same project, "
                    f'e.g. ["{EXAMPLE_ARTIFACT_ID}"]'
                ),
            },
            "artifact_type": {
                "type": "string",
                "pattern": ARTIFACT_TYPE_PATTERN,
                "description": "an optional label: report, plan, dataset, log …",
            },
        },
    }
    publish_encoding = {
        "file": {"contentType": "application/octet-stream, */*"},
        "metadata": {"contentType": JSON},
        "derived_from": {"contentType": JSON},
    }
    published = _location(
        "artifact", f"/v1/projects/{EXAMPLE_PROJECT}/artifacts/{EXAMPLE_ARTIFACT_ID}"
    )
    quota_example = {
        "project": EXAMPLE_PROJECT,
        "used_bytes": 1_048_576,
        "limit_bytes": 10 * 1024**3,
        "artifact_count": 12,
        "limit_artifacts": 100_000,
    }
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["operations"],
                "summary": "Liveness",
                "description": "Answers as long as the process serves requests; it checks "
                "no backend (see readyz).",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "up", {"status": "ok"})},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["operations"],
                "summary": "Readiness: Postgres and object storage answer",
                "description": "Probes Postgres and object storage; `503 unavailable` names "
                "the failing part in `checks`.",
                "security": [],
                "responses": {
                    "200": _json(
                        {"type": "object"},
                        "ready",
                        {"status": "ready", "checks": {"postgres": "ok", "object_storage": "ok"}},
                    ),
                    **_problems(503),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "summary": "Prometheus text exposition",
                "description": "Served on GATEWAY_METRICS_PORT instead, when that is set.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "metrics",
                        "content": {
                            "text/plain": {
                                "example": "# TYPE gateway_http_requests_total counter\n"
                                'gateway_http_requests_total{method="GET"} 1.0\n'
                            }
                        },
                    }
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["operations"],
                "summary": "This document",
                "description": "The OpenAPI 3.1 document of this version of the gateway.",
                "security": [],
                "responses": {
                    "200": _json(
                        {"type": "object"},
                        "OpenAPI",
                        {"openapi": "3.1.0", "info": {"title": "…", "version": __version__}},
                    )
                },
            }
        },
        problem_docs.PAGE_PATH: {
            "get": {
                "operationId": "listProblemTypes",
                "tags": ["problems"],
                "summary": "The documentation of every problem type (HTML)",
                "description": f"What `{PROBLEM_BASE}<slug>` means: one anchor per slug "
                "(`#quota-exceeded`) with the status, code, title, when it happens and what "
                "to do. A page that runs no script.",
                "security": [],
                "responses": {"200": _html("the catalogue", _EXAMPLE_PROBLEM_PAGE)},
            }
        },
        problem_docs.PAGE_PATH + "/{slug}": {
            "get": {
                "operationId": "getProblemType",
                "tags": ["problems"],
                "summary": "The documentation of one problem type (HTML)",
                "description": f"`{PROBLEM_BASE}<slug>` is served here: a proxy or docs "
                "site may map that host onto any gateway.",
                "security": [],
                "parameters": [
                    {
                        "name": "slug",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": sorted(problem_docs.by_slug())},
                        "example": "quota-exceeded",
                    }
                ],
                "responses": {
                    "200": _html("the problem type", _EXAMPLE_PROBLEM_PAGE),
                    **_problems(404),
                },
            }
        },
        "/v1/projects/{project}/claims": {
            "post": {
                "operationId": "registerClaim",
                "tags": ["claims"],
                "summary": "Register a job claim (claims:write); a higher attempt supersedes",
                "description": "Registers the attempt of a job and mints its lease token, "
                "which alone may publish the attempt's artifacts (lineage comes from it). "
                "An attempt not higher than the job's existing ones is `409 claim_conflict`.",
                "parameters": [_PROJECT],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {"schema": _ref("ClaimRequest"), "example": _EXAMPLE_CLAIM_REQUEST}
                    },
                },
                "responses": {
                    "201": _json(
                        _ref("Claim"),
                        "claim registered",
                        {
                            "lease_id": EXAMPLE_LEASE_ID,
                            "lease_token": "eyJhbGciOiJIUzI1NiJ9.eyJsaWQiOiJsc2VfMDEifQ.c2ln",
                            "expires_at": EXAMPLE_EXPIRY,
                            "token_expires_at": EXAMPLE_EXPIRY,
                            "superseded": None,
                        },
                        _location(
                            "claim", f"/v1/projects/{EXAMPLE_PROJECT}/claims/{EXAMPLE_LEASE_ID}"
                        ),
                    ),
                    **_problems(400, 401, 403, 409, 415, 503),
                },
            }
        },
        "/v1/projects/{project}/claims/{lease_id}/renew": {
            "post": {
                "operationId": "renewClaim",
                "tags": ["claims"],
                "summary": "Renew a claim (claims:write)",
                "description": "Extends an active claim by `ttl_seconds` from now; its lease "
                "token keeps working.",
                "parameters": [_PROJECT, _LEASE],
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {"ttl_seconds": _TTL},
                            },
                            "example": {"ttl_seconds": leases.DEFAULT_TTL_SECONDS},
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        _ref("ClaimRenewal"),
                        "the new expiry",
                        {"lease_id": EXAMPLE_LEASE_ID, "expires_at": EXAMPLE_EXPIRY},
                    ),
                    **_problems(400, 401, 403, 404, 415, 503),
                },
            }
        },
        "/v1/projects/{project}/claims/{lease_id}": {
            "delete": {
                "operationId": "releaseClaim",
                "tags": ["claims"],
                "summary": "Release a claim at once (claims:write)",
                "description": "Ends the claim: its lease token publishes nothing more "
                "(`403 lease_inactive`).",
                "parameters": [_PROJECT, _LEASE],
                "responses": {"204": {"description": "released"}, **_problems(401, 403, 404, 503)},
            }
        },
        artifacts: {
            "post": {
                "operationId": "publishArtifact",
                "tags": ["artifacts"],
                "summary": "Publish an artifact (lease token, or artifacts:write)",
                "description": "Streams the file to object storage and commits the artifact "
                "with its lineage, or nothing: a failed publish leaves no artifact, object or "
                "quota charge. A text may be sent as JSON instead of multipart. An "
                "`Idempotency-Key` replays the first answer (200) for the same request.",
                "security": [{"lease": []}, {"bearer": []}],
                "parameters": [
                    _PROJECT,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": publish_form,
                            "encoding": publish_encoding,
                            "example": {
                                "file": EXAMPLE_BYTES,
                                "name": "report.md",
                                "description": "the nightly report",
                                "metadata": {"rows": 120},
                                "artifact_type": "report",
                            },
                        },
                        JSON: {
                            "schema": _ref("JsonPublish"),
                            "example": {
                                "name": "report.md",
                                "content": EXAMPLE_BYTES,
                                "mime": DEFAULT_JSON_MIME,
                                "artifact_type": "report",
                            },
                        },
                    },
                },
                "responses": {
                    "201": _json(_ref("ArtifactRef"), "published", EXAMPLE_REF, published),
                    "200": _json(
                        _ref("ArtifactRef"), "replay of an Idempotency-Key", EXAMPLE_REF, published
                    ),
                    **_problems(400, 401, 403, 408, 409, 410, 413, 415, 503),
                },
            },
            "get": {
                "operationId": "listArtifacts",
                "tags": ["artifacts"],
                "summary": "List artifacts, newest first (artifacts:read)",
                "description": "Pages of the artifacts the principal may see, filtered by "
                "lineage, owner, class, label or name; `next_cursor` fetches the next page.",
                "parameters": list_params,
                "responses": {
                    "200": _json(
                        _ref("ArtifactList"),
                        "a page",
                        {"items": [EXAMPLE_ARTIFACT], "next_cursor": None},
                    ),
                    **_problems(400, 401, 403, 404, 503),
                },
            },
        },
        artifacts + "/quota": {
            "get": {
                "operationId": "getQuota",
                "tags": ["quota"],
                "summary": "The project's quota (artifacts:read)",
                "description": "What the project's live artifacts use, and its limits.",
                "parameters": [_PROJECT],
                "responses": {
                    "200": _json(_ref("Quota"), "quota", quota_example),
                    **_problems(400, 401, 403, 404, 503),
                },
            }
        },
        "/v1/projects/{project}/quota": {
            "put": {
                "operationId": "putQuota",
                "tags": ["quota"],
                "summary": "Set the project's limits (artifacts:admin)",
                "description": "Either limit or both; one left out keeps its value. A "
                "limit below what is used refuses new publishes and deletes nothing.",
                "parameters": [_PROJECT],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "minProperties": 1,
                                "additionalProperties": False,
                                "properties": {
                                    key: {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT}
                                    for key in QUOTA_LIMITS
                                },
                            },
                            "example": {
                                "limit_bytes": quota_example["limit_bytes"],
                                "limit_artifacts": quota_example["limit_artifacts"],
                            },
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("Quota"), "quota", quota_example),
                    **_problems(400, 401, 403, 404, 415, 503),
                },
            }
        },
        one: {
            "get": {
                "operationId": "getArtifact",
                "tags": ["artifacts"],
                "summary": "The artifact, or its tombstone (artifacts:read)",
                "description": "Everything known of the artifact: its lineage, owner, "
                "metadata and state; a deleted one is its tombstone (`state: deleted`).",
                "parameters": [
                    _PROJECT,
                    _ARTIFACT,
                    _query(
                        "include_content",
                        {"enum": ["true", "false"]},
                        "add `content`: the text of a text artifact of at most "
                        + _mib(INCLUDED_CONTENT_BYTES),
                    ),
                ],
                "responses": {
                    "200": _json(_ref("Artifact"), "the artifact", EXAMPLE_ARTIFACT),
                    **_problems(400, 401, 403, 404, 503),
                },
            },
            "delete": {
                "operationId": "deleteArtifact",
                "tags": ["artifacts"],
                "summary": "Soft-delete (artifacts:delete on own artifacts, or artifacts:admin)",
                "description": "Leaves a tombstone, frees the quota and emits "
                "`artifact.deleted`; the bytes are collected later.",
                "parameters": [_PROJECT, _ARTIFACT],
                "responses": {
                    "204": {"description": "deleted (also when already deleted)"},
                    **_problems(401, 403, 404, 503),
                },
            },
        },
        one + "/content": {
            "get": {
                "operationId": "getArtifactContent",
                "tags": ["content"],
                "summary": "The bytes (artifacts:read, or a signed URL)",
                "description": "Streams the bytes, one `Range` at most, revalidated by the "
                "ETag (the sha256). Inline or attachment, and the Content-Type, follow the "
                "serving policy; nothing served can run as a script of this origin.",
                "security": [{"bearer": []}, {}],
                "parameters": content_params,
                "responses": content_responses,
            },
            "head": {
                "operationId": "headArtifactContent",
                "tags": ["content"],
                "summary": "The headers of the bytes",
                "description": "As the GET, without the body.",
                "security": [{"bearer": []}, {}],
                "parameters": content_params,
                "responses": content_responses,
            },
        },
        one + "/signed-url": {
            "post": {
                "operationId": "mintSignedUrl",
                "tags": ["content"],
                "summary": "Mint a short-lived signed content URL (artifacts:read)",
                "description": "A URL of the content that needs no credential until it "
                f"expires (at most {signing.MAX_EXPIRES_IN} seconds) or is revoked.",
                "parameters": [_PROJECT, _ARTIFACT],
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "expires_in": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "maximum": signing.MAX_EXPIRES_IN,
                                        "default": signing.DEFAULT_EXPIRES_IN,
                                    }
                                },
                            },
                            "example": {"expires_in": signing.DEFAULT_EXPIRES_IN},
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        _ref("SignedUrl"),
                        "signed URL",
                        {
                            "url": f"/v1/projects/{EXAMPLE_PROJECT}/artifacts/"
                            f"{EXAMPLE_ARTIFACT_ID}/content?exp=1768471500&kid=k1&sig=c2ln",
                            "expires_at": "2026-01-15T10:05:00Z",
                        },
                    ),
                    **_problems(400, 401, 403, 404, 410, 415, 429, 503),
                },
            }
        },
        one + "/signed-urls": {
            "delete": {
                "operationId": "revokeSignedUrls",
                "tags": ["content"],
                "summary": "Revoke every signed URL minted so far (artifacts:admin)",
                "description": "Every signed URL of the artifact minted before now answers "
                "`403 signature_invalid`; new ones may be minted.",
                "parameters": [_PROJECT, _ARTIFACT],
                "responses": {"204": {"description": "revoked"}, **_problems(401, 403, 404, 503)},
            }
        },
        "/v1/projects/{project}/events": {
            "get": {
                "operationId": "listEvents",
                "tags": ["events"],
                "summary": "Events after a seq; text/event-stream streams them live",
                "parameters": [
                    _PROJECT,
                    _query("after", {"type": "integer", "minimum": 0}, "last seq seen"),
                    _query("type", {"enum": list(EVENT_TYPES)}, "only events of this type"),
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": EVENTS_MAX_LIMIT,
                            "default": EVENTS_DEFAULT_LIMIT,
                        },
                        "page size",
                    ),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "description": _STREAM_DESCRIPTION,
                "responses": {
                    "200": {
                        "description": "a page, or a server-sent event stream",
                        "content": {
                            JSON: {
                                "schema": _ref("EventPage"),
                                "example": {"items": [EXAMPLE_EVENT], "next_after": 41},
                            },
                            "text/event-stream": {
                                "example": "id: 41\nevent: artifact.created\ndata: "
                                + json.dumps(EXAMPLE_EVENT, separators=(",", ":"))
                                + "\n\n"
                            },
                        },
                    },
                    **_problems(400, 401, 403, 404, 410, 429, 503),
                },
            }
        },
    }


def _with_common_problems(paths: dict[str, Any]) -> dict[str, Any]:
    """Every project-scoped operation can answer 400 (a malformed id) and 503; every
    operation with a body 415 (a Content-Encoding) and 417 (an Expect other than
    100-continue)."""
    for operations in paths.values():
        for operation in operations.values():
            if "requestBody" in operation:
                for status in (415, 417):
                    operation["responses"].setdefault(
                        str(status), {"$ref": f"#/components/responses/Problem{status}"}
                    )
            if _PROJECT in operation.get("parameters", []):
                for status in (400, 503):
                    operation["responses"].setdefault(
                        str(status), {"$ref": f"#/components/responses/Problem{status}"}
                    )
    return paths


TAGS = [
    {"name": "claims", "description": "Job claims and their lease tokens: the scheduler's side"},
    {"name": "artifacts", "description": "Publish, list, inspect and delete artifacts"},
    {"name": "content", "description": "The bytes of an artifact, and signed URLs to them"},
    {"name": "quota", "description": "The project's storage quota"},
    {"name": "events", "description": "The artifact.created / artifact.deleted feed"},
    {"name": "operations", "description": "Liveness, readiness, metrics and this document"},
    {
        "name": "problems",
        "description": f"The documentation of every problem type (`{PROBLEM_BASE}<slug>`)",
    },
]


def _problem_response(status: int, text: str) -> dict[str, Any]:
    """``Problem<status>``: its codes, each linked to its documentation, with an example."""
    docs = [doc for doc in problem_docs.catalogue() if doc.status == status]
    links = ", ".join(f"[`{doc.code}`]({doc.path})" for doc in docs)
    examples = {
        doc.code: {
            "summary": doc.title,
            "value": {
                "type": doc.type,
                "title": doc.title,
                "status": status,
                "code": doc.code,
                "detail": doc.when.split(". ")[0].rstrip("."),
                "request_id": "01JD3K7Q9ZB4M2X8N6V5T1R0PA",
                "instance": f"/v1/projects/{EXAMPLE_PROJECT}/artifacts",
            },
        }
        for doc in docs
    }
    return {
        "description": f"{text}. Documentation of each code: {links}",
        "content": {PROBLEM: {"schema": _ref("Problem"), "examples": examples}},
        **_PROBLEM_HEADERS.get(status, {}),
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Mobius artifact gateway",
            "version": __version__,
            "description": (
                "Publish, list, download and watch run artifacts. Errors are RFC 9457 "
                "problem+json with a stable `code`; every problem `type` is documented at "
                f"`{problem_docs.PAGE_PATH}/<slug>` of the gateway."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        # Relative: the gateway that serves this document, whatever host a proxy gives it.
        "servers": [{"url": "/", "description": "the gateway serving this document"}],
        "security": _BEARER,
        "tags": TAGS,
        "paths": _with_common_problems(_paths()),
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "lease": {"type": "apiKey", "in": "header", "name": "X-Mobius-Lease-Token"},
            },
            "responses": {
                f"Problem{status}": _problem_response(status, text)
                for status, text in _PROBLEM_TEXT.items()
            },
        },
    }
