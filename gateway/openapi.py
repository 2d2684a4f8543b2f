"""The OpenAPI 3.1 document of the v1 API, served at ``GET /v1/openapi.json``.

Built as data here so that a test can hold it against the live router: every
route is documented and every documented route exists.
"""

from __future__ import annotations

from typing import Any

from gateway import __version__
from gateway.config import Config
from gateway.db.projects import MAX_LIMIT, QUOTA_LIMITS
from gateway.errors import MAX_INSTANCE, WWW_AUTHENTICATE
from gateway.events import STREAM_END_REASONS

JSON = "application/json"
PROBLEM = "application/problem+json"
OCTET_STREAM = "application/octet-stream"
BINARY = {"type": "string", "format": "binary"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _bytes(description: str) -> dict[str, Any]:
    return {
        "description": (
            f"{description}. Served as the artifact's own media type, or as "
            "text/plain; charset=utf-8 or application/octet-stream under the serving policy: "
            "any media type may arrive"
        ),
        "content": {OCTET_STREAM: {"schema": BINARY}, "*/*": {"schema": BINARY}},
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
    "artifact)",
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
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
}
_ARTIFACT = {
    "name": "artifact_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^art_[0-9A-HJKMNP-TV-Z]{26}$"},
}
_LEASE = {"name": "lease_id", "in": "path", "required": True, "schema": {"type": "string"}}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


# 1-200 characters, no control characters (what the claim handler accepts)
_LINEAGE_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "pattern": "^[^\\x00-\\x1f\\x7f]+$",
}
_TTL = {
    "type": "integer",
    "minimum": 1,
    "default": 3600,
    "description": "seconds; at most GATEWAY_LEASE_MAX_TTL_SECONDS (default 86400)",
}

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "code", "request_id"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "code": {"type": "string"},
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
            "id": {"type": "string", "pattern": "^art_[0-9A-HJKMNP-TV-Z]{26}$"},
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
                "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$",
                "description": "an optional label: report, plan, dataset, log …",
            },
            "content": {
                "type": ["string", "null"],
                "description": "with ?include_content=true: the text of a text artifact "
                "of at most 1 MiB",
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
            "name": {"type": "string", "maxLength": 255},
            "content": {
                "type": "string",
                "description": "UTF-8 text, at most GATEWAY_MAX_JSON_CONTENT_BYTES (1 MiB) "
                "encoded; larger is 413 artifact_too_large (use multipart)",
            },
            "mime": {"type": "string", "default": "text/markdown"},
            "description": {"type": ["string", "null"], "maxLength": 4096},
            "metadata": {"type": ["object", "null"]},
            "derived_from": {
                "type": ["array", "null"],
                "maxItems": 100,
                "items": {"type": "string", "pattern": "^art_[0-9A-HJKMNP-TV-Z]{26}$"},
            },
            "artifact_type": {
                "type": ["string", "null"],
                "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$",
            },
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
            "attempt": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
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
            "type": {"enum": ["artifact.created", "artifact.deleted"]},
            "artifact": _ref("Artifact"),
            "at": {"type": "string", "format": "date-time"},
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


def _paths() -> dict[str, Any]:
    artifacts = "/v1/projects/{project}/artifacts"
    one = artifacts + "/{artifact_id}"
    content_responses = {
        "200": _bytes("the bytes"),
        "206": _bytes("the requested range (Content-Range names it)"),
        "304": {"description": "not modified (If-None-Match matched the ETag)"},
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
        _query("mime_class", {"enum": ["image", "html", "code", "text", "other"]}, "class"),
        _query(
            "artifact_type", {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}, "label"
        ),
        _query("name_prefix", {"type": "string"}, "names starting with this"),
        _query("include_deleted", {"enum": ["true", "false"]}, "include tombstones"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, ""),
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
                "maxLength": 255,
                "description": "display name (the last path component is kept)",
            },
            "description": {"type": "string", "maxLength": 4096},
            "metadata": {
                "type": "object",
                "description": "a JSON object, at most 16 KiB encoded and 32 levels deep; "
                "no NaN/Infinity, NUL or lone surrogates",
            },
            # One part holding a JSON array: a string here, since generators send an array
            # property as repeated parts, which the gateway refuses.
            "derived_from": {
                "type": "string",
                "contentMediaType": JSON,
                "contentSchema": {
                    "type": "array",
                    "maxItems": 100,
                    "items": {"type": "string", "pattern": "^art_[0-9A-HJKMNP-TV-Z]{26}$"},
                },
                "description": (
                    "a JSON array of ids of artifacts of the same project, "
                    'e.g. ["art_01JD3K7Q9ZB4M2X8N6V5T1R0PA"]'
                ),
            },
            "artifact_type": {
                "type": "string",
                "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$",
                "description": "an optional label: report, plan, dataset, log …",
            },
        },
    }
    publish_encoding = {
        "file": {"contentType": "application/octet-stream, */*"},
        "metadata": {"contentType": JSON},
        "derived_from": {"contentType": JSON},
    }
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["operations"],
                "summary": "Liveness",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "up")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["operations"],
                "summary": "Readiness: Postgres and object storage answer",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "ready"), **_problems(503)},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "summary": "Prometheus text exposition",
                "security": [],
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["operations"],
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI")},
            }
        },
        "/v1/projects/{project}/claims": {
            "post": {
                "operationId": "registerClaim",
                "tags": ["claims"],
                "summary": "Register a job claim (claims:write); a higher attempt supersedes",
                "parameters": [_PROJECT],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("ClaimRequest")}},
                },
                "responses": {
                    "201": _json(_ref("Claim"), "claim registered"),
                    **_problems(400, 401, 403, 409, 415, 503),
                },
            }
        },
        "/v1/projects/{project}/claims/{lease_id}/renew": {
            "post": {
                "operationId": "renewClaim",
                "tags": ["claims"],
                "summary": "Renew a claim (claims:write)",
                "parameters": [_PROJECT, _LEASE],
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {"ttl_seconds": _TTL},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("ClaimRenewal"), "the new expiry"),
                    **_problems(400, 401, 403, 404, 415, 503),
                },
            }
        },
        "/v1/projects/{project}/claims/{lease_id}": {
            "delete": {
                "operationId": "releaseClaim",
                "tags": ["claims"],
                "summary": "Release a claim at once (claims:write)",
                "parameters": [_PROJECT, _LEASE],
                "responses": {"204": {"description": "released"}, **_problems(401, 403, 404, 503)},
            }
        },
        artifacts: {
            "post": {
                "operationId": "publishArtifact",
                "tags": ["artifacts"],
                "summary": "Publish an artifact (lease token, or artifacts:write)",
                "security": [{"lease": []}, {"bearer": []}],
                "parameters": [
                    _PROJECT,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 255},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": publish_form,
                            "encoding": publish_encoding,
                        },
                        JSON: {"schema": _ref("JsonPublish")},
                    },
                },
                "responses": {
                    "201": _json(_ref("ArtifactRef"), "published"),
                    "200": _json(_ref("ArtifactRef"), "replay of an Idempotency-Key"),
                    **_problems(400, 401, 403, 408, 409, 410, 413, 415, 503),
                },
            },
            "get": {
                "operationId": "listArtifacts",
                "tags": ["artifacts"],
                "summary": "List artifacts, newest first (artifacts:read)",
                "parameters": list_params,
                "responses": {
                    "200": _json(_ref("ArtifactList"), "a page"),
                    **_problems(400, 401, 403, 404, 503),
                },
            },
        },
        artifacts + "/quota": {
            "get": {
                "operationId": "getQuota",
                "tags": ["quota"],
                "summary": "The project's quota (artifacts:read)",
                "parameters": [_PROJECT],
                "responses": {
                    "200": _json(_ref("Quota"), "quota"),
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
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("Quota"), "quota"),
                    **_problems(400, 401, 403, 404, 415, 503),
                },
            }
        },
        one: {
            "get": {
                "operationId": "getArtifact",
                "tags": ["artifacts"],
                "summary": "The artifact, or its tombstone (artifacts:read)",
                "parameters": [
                    _PROJECT,
                    _ARTIFACT,
                    _query(
                        "include_content",
                        {"enum": ["true", "false"]},
                        "add `content`: the text of a text artifact of at most 1 MiB",
                    ),
                ],
                "responses": {
                    "200": _json(_ref("Artifact"), "the artifact"),
                    **_problems(400, 401, 403, 404, 503),
                },
            },
            "delete": {
                "operationId": "deleteArtifact",
                "tags": ["artifacts"],
                "summary": "Soft-delete (artifacts:delete on own artifacts, or artifacts:admin)",
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
                "security": [{"bearer": []}, {}],
                "parameters": content_params,
                "responses": content_responses,
            },
            "head": {
                "operationId": "headArtifactContent",
                "tags": ["content"],
                "summary": "The headers of the bytes",
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
                                        "maximum": 3600,
                                        "default": 300,
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("SignedUrl"), "signed URL"),
                    **_problems(400, 401, 403, 404, 410, 415, 429, 503),
                },
            }
        },
        one + "/signed-urls": {
            "delete": {
                "operationId": "revokeSignedUrls",
                "tags": ["content"],
                "summary": "Revoke every signed URL minted so far (artifacts:admin)",
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
                    _query("type", {"enum": ["artifact.created", "artifact.deleted"]}, ""),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, ""),
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
                        "content": {JSON: {"schema": _ref("EventPage")}, "text/event-stream": {}},
                    },
                    **_problems(400, 401, 403, 404, 429, 503),
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
]


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Mobius artifact gateway",
            "version": __version__,
            "description": (
                "Publish, list, download and watch run artifacts. Errors are RFC 9457 "
                "problem+json with a stable `code`."
            ),
        },
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
                f"Problem{status}": {
                    "description": text,
                    "content": {PROBLEM: {"schema": _ref("Problem")}},
                    **_PROBLEM_HEADERS.get(status, {}),
                }
                for status, text in _PROBLEM_TEXT.items()
            },
        },
    }
