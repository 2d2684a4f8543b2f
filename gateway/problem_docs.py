"""The documentation of every problem type: what ``https://mobius.dev/problems/<slug>`` means.

A problem's ``type`` is :data:`gateway.errors.PROBLEM_BASE` + its code with dashes
(``quota_exceeded`` → ``…/problems/quota-exceeded``). Every gateway serves the
catalogue at ``GET /problems`` (one anchor per slug) and each entry at
``GET /problems/<slug>`` (:mod:`gateway.api.problem_pages`), so a proxy or a docs
site can map the ``mobius.dev`` host onto any gateway. The OpenAPI document links
each problem response to its entry.

The catalogue is built from the errors themselves (every :class:`ApiError`
subclass, the codes that end an event stream, and the fallback for an HTTP error
of the framework): status, code and title are never written twice; only the
prose — when it happens, what to do — lives here.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass

from gateway.errors import PROBLEM_BASE, ApiError
from gateway.events import STREAM_END_REASONS

PAGE_PATH = "/problems"
"""Where every gateway serves the catalogue; ``PAGE_PATH + "/" + slug`` serves one entry."""

HTTP_ERROR = "http_error"
"""The code of an HTTP error of the framework that has no code of its own
(:func:`gateway.api.problems.problem_for`)."""

# code → (when it happens, what to do)
_PROSE: dict[str, tuple[str, str]] = {
    "invalid_request": (
        "The request is malformed: a multipart body that does not parse, a missing or "
        "repeated `file` part, an unknown part, field or query parameter, bad JSON, a "
        "value out of range, or a malformed project, artifact or lease id.",
        "Read `detail`, which names the offending part; fix the request and send it again. "
        "Retrying it unchanged gets the same answer.",
    ),
    "lineage_not_allowed": (
        "A publish names a lineage field (run, step, job, attempt, session, project) in "
        "its form, query or headers; lineage is derived from the lease token alone.",
        "Drop the lineage field from the request; the lease already carries it.",
    ),
    "unauthenticated": (
        "No credential, or one that does not verify: a bad signature, a wrong `aud` or "
        "`iss`, an expired token, an `alg` that is not allowed, or a rejected lease token. "
        "The answer carries `WWW-Authenticate`.",
        "Send a valid bearer token (or lease token); obtain a fresh one if it expired.",
    ),
    "lease_inactive": (
        "The lease token verifies, but its claim was released, expired or is unknown.",
        "Register the claim again (a new attempt) and publish with its new lease token.",
    ),
    "lease_superseded": (
        "A newer attempt of the same job holds the active claim; this attempt may no "
        "longer publish.",
        "Stop this attempt: its results are no longer wanted.",
    ),
    "forbidden": (
        "The principal lacks the scope the route needs, or the project; or the lease "
        "belongs to another project.",
        "Use a credential with the named scope and project.",
    ),
    "signature_invalid": (
        "A signed content URL that was altered, has expired, was signed under a retired "
        "key, or was revoked.",
        "Mint a new signed URL (`POST …/signed-url`).",
    ),
    "not_found": (
        "No such route, artifact, claim or file; also an artifact the principal may not "
        "see, and any artifact, listing, quota or feed of a project outside the "
        "principal's, so that ids cannot be probed.",
        "Check the project and the id, and that the credential may see them.",
    ),
    "method_not_allowed": (
        "The route exists but does not have this method.",
        "Use one of the methods the `Allow` header names.",
    ),
    "body_too_slow": (
        "The request body arrived below the minimum rate, or, while other uploads "
        "waited for upload buffers, did not fill one in time and the memory kept for "
        "slow uploads was in use. Nothing was published; the connection is closed.",
        "Send the body again, faster, or later when the gateway is less loaded.",
    ),
    "idempotency_conflict": (
        "An `Idempotency-Key` was reused with a different file, name, mime, "
        "description, metadata or derived_from.",
        "Use a new key for a different publish; reuse a key only to retry the same one.",
    ),
    "claim_conflict": (
        "Registering an attempt that is not higher than the job's existing ones "
        "(`existing_attempt` says which).",
        "Register a higher attempt, or keep using the existing claim.",
    ),
    "artifact_deleted": (
        "The content, or a signed URL, of a deleted artifact; or an `Idempotency-Key` "
        "replay of an artifact deleted since. Its tombstone remains readable.",
        "Publish the artifact again if it is still needed.",
    ),
    "events_expired": (
        "`after` (or `Last-Event-ID`) is below the oldest event kept: the events after "
        "it are past `GATEWAY_EVENTS_RETENTION_SECONDS` and pruned, so the feed would "
        "have a gap (`pruned_seq` says the highest seq pruned).",
        "Re-list the artifacts, then follow the feed from `pruned_seq` or a newer seq.",
    ),
    "expectation_failed": (
        "An `Expect` header other than `100-continue`.",
        "Send `Expect: 100-continue` or none.",
    ),
    "client_closed": (
        "The client closed the connection before the answer (recorded in logs and "
        "metrics as 499; no client receives it).",
        "Nothing: the client went away. Retry if the result is still wanted.",
    ),
    "artifact_too_large": (
        "The artifact (or the request body) exceeds the gateway's maximum size "
        "(`GATEWAY_MAX_ARTIFACT_BYTES`; a JSON publish's content "
        "`GATEWAY_MAX_JSON_CONTENT_BYTES`). Nothing was published.",
        "Send a smaller artifact; a text larger than the JSON limit goes as multipart.",
    ),
    "quota_exceeded": (
        "The artifact does not fit in the project's remaining byte quota, the byte quota "
        "is used up (empty files included), or the project holds its maximum number of "
        "artifacts. Nothing was published.",
        "Delete artifacts, or ask an administrator to raise the project's quota "
        "(`PUT /v1/projects/{project}/quota`).",
    ),
    "unsupported_media_type": (
        "A publish that is not `multipart/form-data` or `application/json`, or a JSON "
        "body sent as another type.",
        "Send the body with the Content-Type the operation documents.",
    ),
    "unsupported_content_encoding": (
        "A request body with a `Content-Encoding` other than `identity`; the answer "
        "carries `Accept-Encoding: identity`.",
        "Send the body uncompressed.",
    ),
    "range_not_satisfiable": (
        "A `Range` outside the artifact; `Content-Range: bytes */<size>` gives its size.",
        "Ask for a range within the size, or for the whole content.",
    ),
    "rate_limited": (
        "Too many signed-URL mints for one principal, or too many concurrent event "
        "streams for the principal or the project, on this replica.",
        "Wait the seconds `Retry-After` names, then retry.",
    ),
    "unavailable": (
        "Postgres or object storage is unreachable or restarting, or no upload buffer "
        "came free in time. Nothing was published.",
        "Retry after the seconds `Retry-After` names; the request is safe to repeat.",
    ),
    "internal_error": (
        "An unexpected failure of the gateway; no request a client can craft causes one.",
        "Retry later, and report the `request_id` to the operators.",
    ),
    HTTP_ERROR: (
        "An HTTP error of the web framework that has no code of its own (a request line "
        "or headers too large, for instance); `status` and `title` say which.",
        "Fix the request as the status says.",
    ),
    "token_expired": (
        "Ends an event stream (the final `event: error`): the stream's token expired.",
        "Reconnect with a fresh token and `Last-Event-ID`.",
    ),
    "slow_consumer": (
        "Ends an event stream (the final `event: error`): the client read too slowly to keep up.",
        "Reconnect with `Last-Event-ID`, and read the stream faster.",
    ),
}


@dataclass(frozen=True, kw_only=True)
class ProblemDoc:
    """One problem type: what a client sees, when it happens and what to do."""

    code: str
    title: str
    status: int | None
    """None for a code that ends an event stream (sent inside a 200 stream)."""
    when: str
    remedy: str

    @property
    def slug(self) -> str:
        return slug_of(self.code)

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    @property
    def path(self) -> str:
        """Where the gateway serves the entry."""
        return f"{PAGE_PATH}/{self.slug}"


def slug_of(code: str) -> str:
    return code.replace("_", "-")


def error_classes() -> list[type[ApiError]]:
    """Every error the gateway can raise: each (transitive) subclass of ApiError."""
    found: list[type[ApiError]] = []
    pending = list(ApiError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found


@functools.cache
def catalogue() -> tuple[ProblemDoc, ...]:
    """Every documented problem type, by status then code (those without one last)."""
    titles: dict[str, tuple[int | None, str]] = {
        cls.code: (cls.status, cls.title) for cls in error_classes()
    }
    titles.setdefault(HTTP_ERROR, (None, "HTTP error"))
    for code, (title, _) in STREAM_END_REASONS.items():
        titles.setdefault(code, (None, title))
    docs = [
        ProblemDoc(code=code, title=title, status=status, when=when, remedy=remedy)
        for code, (status, title) in titles.items()
        for when, remedy in [_PROSE.get(code, ("", ""))]
    ]
    return tuple(sorted(docs, key=lambda doc: (doc.status is None, doc.status or 0, doc.code)))


@functools.cache
def by_slug() -> dict[str, ProblemDoc]:
    return {doc.slug: doc for doc in catalogue()}


def _inline(text: str) -> str:
    """Escape ``text``; `backticks` become <code>."""
    parts = html.escape(text, quote=True).split("`")
    return "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))


def _entry(doc: ProblemDoc) -> str:
    status = str(doc.status) if doc.status is not None else "— (ends an event stream)"
    return (
        f'<section id="{doc.slug}">\n'
        f'<h2><a href="{PAGE_PATH}#{doc.slug}">{html.escape(doc.title)}</a></h2>\n'
        "<dl>\n"
        f"<dt>type</dt><dd><code>{html.escape(doc.type)}</code></dd>\n"
        f"<dt>status</dt><dd>{status}</dd>\n"
        f"<dt>code</dt><dd><code>{doc.code}</code></dd>\n"
        f"<dt>when</dt><dd>{_inline(doc.when)}</dd>\n"
        f"<dt>what to do</dt><dd>{_inline(doc.remedy)}</dd>\n"
        "</dl>\n"
        "</section>\n"
    )


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}</body>\n</html>\n"
    )


@functools.cache
def render_catalogue() -> str:
    """The HTML page of every problem type, one ``id`` anchor per slug."""
    docs = catalogue()
    intro = (
        "<p>Every error of the gateway is <code>application/problem+json</code> "
        "(RFC 9457) with a stable <code>code</code>; its <code>type</code> is "
        f"<code>{html.escape(PROBLEM_BASE)}&lt;code with dashes&gt;</code>, documented "
        f"here at <code>{PAGE_PATH}/&lt;slug&gt;</code> of every gateway.</p>\n"
    )
    index = "<ul>\n" + "".join(
        f'<li><a href="#{doc.slug}"><code>{doc.code}</code></a> {html.escape(doc.title)}</li>\n'
        for doc in docs
    )
    return _page("Problem types", intro + index + "</ul>\n" + "".join(map(_entry, docs)))


def render_entry(doc: ProblemDoc) -> str:
    """The page of one problem type, linking to the catalogue."""
    back = f'<p><a href="{PAGE_PATH}#{doc.slug}">Every problem type</a></p>\n'
    return _page(f"{doc.title} ({doc.code})", _entry(doc) + back)
