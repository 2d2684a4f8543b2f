"""A property over the whole API surface: no request a client can craft gets a 5xx.

Every route of the live router, every method, with path parameters, query
strings, headers and bodies drawn from hostile values (bytes that are not UTF-8,
NUL, Unicode digits, numbers past int64, JSON nested deeper than any parser's
recursion, NaN, lone surrogates, over-long tokens …), mixed with valid ones so
that requests get past authentication into the handlers. The gateway is served
as ``serve`` serves it (its own connection layer), on the real backends.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from tests.conftest import ALL_SCOPES, make_config, principal_token
from tests.helpers import ServerThread

PROJECT = "prj-surface-" + secrets.token_hex(4)
ADMIN_TOKEN = principal_token("user:admin", ALL_SCOPES)
SCHEDULER_TOKEN = principal_token("svc:scheduler", "claims:write")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_PARAM = re.compile(r"\{([a-z_]+)\}")

HOSTILE_TEXT = [
    "",
    "%00",
    "a%00b",
    "%FF%FE",
    "%C2%B2",
    "%D9%A3",
    "%E2%80%AE",
    "%ED%A0%80",
    "..",
    "%2e%2e",
    "x" * 300,
    "99999999999999999999999",
    "-1",
    "1e999",
    "NaN",
    "art_" + "Z" * 26,
    "art_%00",
    "lse_%00x",
    "%0d%0aSet-Cookie:%20x",
    "demo%0A",
    "%D9%A1%D9%A2",
    "9" * 5000,
    "true",
    "*",
]
HOSTILE_HEADER_BYTES = [
    b"\xff\xfe",
    b"Bearer \xe9t\xe9",
    b"Bearer " + b"a" * 9000,
    b"Bearer a.b.c",
    b"Bearer eyJhbGciOiJub25lIn0.e30.",
    b"bytes=\xb2-",
    b"bytes=99999999999999999999999-",
    b"bytes=" + b"9" * 5000 + b"-" + b"9" * 5000,
    b"bytes=\xd9\xa1-\xd9\xa2",
    b"gzip",
    b"deflate",
    b"br",
    b"bytes=-0",
    b"bytes=5-1, 7-9",
    b"\x00",
    b'W/"x"',
    b"text/event-stream;q=NaN",
    b"multipart/form-data; boundary=",
    b"application/json; charset=latin-1",
    b"100-continue",
    b"something-else",
]
DEEP = '{"a":' * 5000 + "1" + "}" * 5000
HOSTILE_BODIES = [
    b"",
    b"{}",
    b"[]",
    b"null",
    b'{"expires_in": 1e999}',
    b'{"expires_in": NaN}',
    b'{"limit_bytes": 99999999999999999999999999}',
    b'{"limit_bytes": -1}',
    b'{"ttl_seconds": "x"}',
    b'{"run_id": "a\\u0000b", "step_id": "s", "job_id": "j", "attempt": 1,'
    b' "worker_session_id": "w"}',
    b'{"run_id": "\\ud800", "step_id": "s", "job_id": "j", "attempt": 1, "worker_session_id": "w"}',
    DEEP.encode(),
    ("[" * 100_000).encode(),
    b"\xff\xfe\x00",
    b'{"a": "' + b"x" * 70_000 + b'"}',
]


class Surface:
    def __init__(self, server: ServerThread, artifact_id: str, lease_id: str, routes: list[str]):
        self.server = server
        self.artifact_id = artifact_id
        self.lease_id = lease_id
        self.routes = routes


@pytest.fixture(scope="module")
def surface(backends) -> Iterator[Surface]:
    app = create_app(make_config(backends, body_idle_timeout_seconds=2))
    routes = sorted(
        {
            r.resource.canonical
            for r in app.router.routes()
            if r.resource is not None and r.resource.canonical.startswith("/v1/")
        }
    )
    with ServerThread(app) as server:
        port = server.port
        status, claim = _request(
            port,
            "POST",
            f"/v1/projects/{PROJECT}/claims",
            {"Authorization": f"Bearer {SCHEDULER_TOKEN}".encode()},
            json.dumps(
                {
                    "run_id": "run_1",
                    "step_id": "s",
                    "job_id": "job_" + secrets.token_hex(3),
                    "attempt": 1,
                    "worker_session_id": "ws_1",
                }
            ).encode(),
        )
        assert status == 201, claim
        lease = json.loads(claim)
        boundary = "surfaceB"
        form = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
        ).encode()
        status, ref = _request(
            port,
            "POST",
            f"/v1/projects/{PROJECT}/artifacts",
            {
                "X-Mobius-Lease-Token": lease["lease_token"].encode(),
                "Content-Type": f"multipart/form-data; boundary={boundary}".encode(),
            },
            form,
        )
        assert status == 201, ref
        yield Surface(server, json.loads(ref)["id"], lease["lease_id"], routes)


def _request(
    port: int, method: str, path: str, headers: dict[str, bytes], body: bytes = b""
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = b"" if method == "HEAD" else resp.read(4096)
        return resp.status, data
    except (ConnectionError, http.client.RemoteDisconnected):
        return 0, b""  # the server closed the connection (e.g. an over-long head): no 5xx
    finally:
        conn.close()


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "route": draw(st.integers(min_value=0, max_value=10_000)),
        "method": draw(st.sampled_from(METHODS)),
        "params": draw(
            st.dictionaries(
                st.sampled_from(["project", "artifact_id", "lease_id"]),
                st.one_of(st.just(None), st.sampled_from(HOSTILE_TEXT)),
            )
        ),
        "query": draw(
            st.lists(
                st.tuples(
                    st.sampled_from(
                        [
                            "limit",
                            "attempt",
                            "cursor",
                            "after",
                            "type",
                            "owner",
                            "mime_class",
                            "include_deleted",
                            "name_prefix",
                            "run_id",
                            "exp",
                            "kid",
                            "sig",
                            "x",
                        ]
                    ),
                    st.sampled_from(HOSTILE_TEXT),
                ),
                max_size=3,
            )
        ),
        "auth": draw(st.sampled_from(["admin", "scheduler", "none", "hostile"])),
        "headers": draw(
            st.dictionaries(
                st.sampled_from(
                    [
                        "Range",
                        "If-Range",
                        "If-None-Match",
                        "Last-Event-ID",
                        "Accept",
                        "Content-Type",
                        "Idempotency-Key",
                        "Expect",
                        "Content-Encoding",
                        "X-Mobius-Lease-Token",
                        "X-Request-ID",
                    ]
                ),
                st.sampled_from(HOSTILE_HEADER_BYTES),
                max_size=3,
            )
        ),
        "hostile_auth": draw(st.sampled_from(HOSTILE_HEADER_BYTES)),
        "body": draw(st.sampled_from(HOSTILE_BODIES)),
    }


@given(req=requests())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_request_gets_a_5xx(surface: Surface, req: dict[str, Any]) -> None:
    route = surface.routes[req["route"] % len(surface.routes)]
    values = {"project": PROJECT, "artifact_id": surface.artifact_id, "lease_id": surface.lease_id}
    for name, value in req["params"].items():
        if value is not None:
            values[name] = value
    path = _PARAM.sub(lambda m: values.get(m.group(1), "x"), route)
    if req["query"]:
        path += "?" + "&".join(f"{k}={v}" for k, v in req["query"])
    headers: dict[str, bytes] = dict(req["headers"])
    if req["auth"] == "admin":
        headers["Authorization"] = f"Bearer {ADMIN_TOKEN}".encode()
    elif req["auth"] == "scheduler":
        headers["Authorization"] = f"Bearer {SCHEDULER_TOKEN}".encode()
    elif req["auth"] == "hostile":
        headers["Authorization"] = req["hostile_auth"]
    if headers.get("Accept", b"").startswith(b"text/event-stream"):
        headers.pop("Accept")  # a live stream never ends by itself; its opening is tested apart
    status, answer = _request(surface.server.port, req["method"], path, headers, req["body"])
    assert status < 500, (req["method"], path, headers, status, answer[:300])
    if status >= 400 and req["method"] != "HEAD":
        assert json.loads(answer)["code"], answer[:300]
