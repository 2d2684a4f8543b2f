"""The events feed against real Postgres and SeaweedFS: paged JSON and live SSE."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway.api.state import EVENT_HUB, EVENTS_HEARTBEAT_SECONDS
from gateway.app import create_app
from gateway.config import Config
from tests.conftest import bearer, principal_token
from tests.helpers import ADMIN, READER, eventually, lease, new_claim, publish

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
SSE = {"Accept": "text/event-stream"}
QUIET = 60.0  # a heartbeat so long that only a NOTIFY can deliver an event in time

MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(aiohttp_client: Any, config: Config) -> MakeClient:
    """Another gateway app on the same backends, with its own heartbeat."""

    async def make(heartbeat: float = QUIET) -> TestClient:
        app = create_app(config)
        app[EVENTS_HEARTBEAT_SECONDS] = heartbeat
        client: TestClient = await aiohttp_client(app)
        return client

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    return await make_client()


def events_url(project: str, **query: Any) -> str:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/v1/projects/{project}/events" + (f"?{qs}" if qs else "")


async def run_publish(client: TestClient, project: str, name: str = "a.txt") -> dict[str, Any]:
    claim = await new_claim(client, project)
    resp = await publish(client, project, lease(claim), name.encode(), filename=name)
    assert resp.status == 201, await resp.text()
    ref: dict[str, Any] = await resp.json()
    ref["run_id"] = claim["request"]["run_id"]
    return ref


async def feed(client: TestClient, url: str, headers: dict[str, str] = READER) -> dict[str, Any]:
    resp = await client.get(url, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    body: dict[str, Any] = await resp.json()
    return body


@dataclass
class Frame:
    fields: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    @property
    def data(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.fields["data"])
        return parsed


async def next_frame(resp: aiohttp.ClientResponse, timeout: float = 3.0) -> Frame:
    """The next SSE frame (fields up to a blank line), or TimeoutError."""
    frame = Frame()
    async with asyncio.timeout(timeout):
        while True:
            raw = await resp.content.readline()
            if not raw:
                raise EOFError("the stream ended")
            line = raw.decode().rstrip("\r\n")
            if not line:
                if frame.fields or frame.comments:
                    return frame
                continue
            if line.startswith(":"):
                frame.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            frame.fields[name] = (
                frame.fields[name] + "\n" + value if name in frame.fields else value
            )


async def next_event(resp: aiohttp.ClientResponse, timeout: float = 3.0) -> Frame:
    """The next frame carrying an event, skipping keep-alive comments."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await next_frame(resp, timeout)
            if "data" in frame.fields:
                return frame


async def open_stream(
    client: TestClient, project: str, headers: dict[str, str] = READER, **query: Any
) -> aiohttp.ClientResponse:
    resp = await client.get(events_url(project, **query), headers={**headers, **SSE})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Accel-Buffering"] == "no"
    return resp


async def record_deletion(db: asyncpg.Connection, project: str, artifact_id: str) -> None:
    """An ``artifact.deleted`` outbox row (next seq, same payload), without a NOTIFY."""
    await db.execute(
        """
        WITH p AS (UPDATE projects SET event_seq = event_seq + 1 WHERE project_id = $1
                   RETURNING event_seq)
        INSERT INTO events (project_id, seq, type, artifact_id, payload)
        SELECT $1, p.event_seq, 'artifact.deleted', $2, e.payload
        FROM p, events e
        WHERE e.project_id = $1 AND e.artifact_id = $2 AND e.type = 'artifact.created'
        """,
        project,
        artifact_id,
    )


# --- paged feed ---------------------------------------------------------------


async def test_feed_lists_created_events_in_order(client: TestClient, project: str) -> None:
    refs = [await run_publish(client, project, f"f{i}.txt") for i in range(3)]
    body = await feed(client, events_url(project))
    items = body["items"]
    assert [i["type"] for i in items] == ["artifact.created"] * 3
    assert [i["artifact"]["id"] for i in items] == [r["id"] for r in refs]
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert body["next_after"] == seqs[-1]
    first = items[0]
    assert RFC3339.match(first["at"])
    assert first["artifact"]["owner"] == {"kind": "run", "id": refs[0]["run_id"]}
    assert first["artifact"]["name"] == "f0.txt" and first["artifact"]["project"] == project
    assert first["artifact"]["lineage"]["run_id"] == refs[0]["run_id"]


async def test_feed_pages_with_after_and_limit(client: TestClient, project: str) -> None:
    refs = [await run_publish(client, project, f"p{i}.txt") for i in range(3)]
    page1 = await feed(client, events_url(project, limit=2))
    assert [i["artifact"]["id"] for i in page1["items"]] == [r["id"] for r in refs[:2]]
    page2 = await feed(client, events_url(project, after=page1["next_after"], limit=2))
    assert [i["artifact"]["id"] for i in page2["items"]] == [refs[2]["id"]]
    assert page2["items"][0]["seq"] > page1["next_after"]
    page3 = await feed(client, events_url(project, after=page2["next_after"]))
    assert page3 == {"items": [], "next_after": page2["next_after"]}
    empty = await feed(client, events_url("prj-never-used-" + project[-6:], after=7))
    assert empty == {"items": [], "next_after": 7}


async def test_feed_type_filter(client: TestClient, project: str, db: asyncpg.Connection) -> None:
    ref = await run_publish(client, project)
    await record_deletion(db, project, ref["id"])
    everything = await feed(client, events_url(project))
    assert [i["type"] for i in everything["items"]] == ["artifact.created", "artifact.deleted"]
    created = await feed(client, events_url(project, type="artifact.created"))
    assert [i["type"] for i in created["items"]] == ["artifact.created"]
    deleted = await feed(client, events_url(project, type="artifact.deleted"))
    assert [i["type"] for i in deleted["items"]] == ["artifact.deleted"]
    assert deleted["next_after"] == everything["next_after"]


@pytest.mark.parametrize(
    "query",
    [
        "after=-1",
        "after=abc",
        "after=1.5",
        "after=",
        "after=99999999999999999999",
        "after=1&after=2",
        "type=artifact.updated",
        "type=",
        "limit=0",
        "limit=501",
        "limit=ten",
    ],
)
async def test_feed_rejects_bad_query(client: TestClient, project: str, query: str) -> None:
    resp = await client.get(f"/v1/projects/{project}/events?{query}", headers=READER)
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["code"] == "invalid_request"


async def test_feed_rejects_bad_last_event_id(client: TestClient, project: str) -> None:
    headers = {**READER, **SSE, "Last-Event-ID": "nope"}
    resp = await client.get(events_url(project), headers=headers)
    assert resp.status == 400
    assert (await resp.json())["code"] == "invalid_request"


async def test_feed_authentication_and_authorisation(client: TestClient, project: str) -> None:
    url = events_url(project)
    resp = await client.get(url)
    assert resp.status == 401 and (await resp.json())["code"] == "unauthenticated"
    outsider = bearer(principal_token("user:eve", "artifacts:read", projects=["elsewhere"]))
    resp = await client.get(url, headers=outsider)
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"
    writer_only = bearer(principal_token("user:wanda", "artifacts:write", projects=[project]))
    resp = await client.get(url, headers=writer_only)
    assert resp.status == 403 and (await resp.json())["code"] == "forbidden"
    # The same checks guard the stream, before any byte of it is sent.
    resp = await client.get(url, headers={**outsider, **SSE})
    assert resp.status == 404 and resp.content_type == "application/problem+json"


async def test_principal_artifact_events_follow_visibility(
    client: TestClient, project: str
) -> None:
    owner = bearer(principal_token("agent:summariser", "artifacts:read artifacts:write"))
    resp = await publish(client, project, owner, b"{}", filename="out.json")
    assert resp.status == 201
    private_id = (await resp.json())["id"]
    public = await run_publish(client, project)

    def ids(body: dict[str, Any]) -> list[str]:
        return [i["artifact"]["id"] for i in body["items"]]

    assert ids(await feed(client, events_url(project), READER)) == [public["id"]]
    assert ids(await feed(client, events_url(project), owner)) == [private_id, public["id"]]
    assert ids(await feed(client, events_url(project), ADMIN)) == [private_id, public["id"]]
    # The live stream filters the same way.
    stream = await open_stream(client, project, READER)
    assert (await next_event(stream)).data["artifact"]["id"] == public["id"]
    stream.close()


# --- server-sent events -------------------------------------------------------


async def test_stream_delivers_a_new_event_live(client: TestClient, project: str) -> None:
    stream = await open_stream(client, project)
    ref = await run_publish(client, project, "live.txt")
    frame = await next_event(stream, timeout=3.0)
    assert frame.fields["event"] == "artifact.created"
    assert frame.data["artifact"]["id"] == ref["id"]
    assert frame.fields["id"] == str(frame.data["seq"])
    assert set(frame.data) == {"seq", "type", "artifact", "at"}
    listed = await feed(client, events_url(project))
    assert listed["items"] == [frame.data]  # the same item as the paged feed
    stream.close()


async def test_stream_replays_past_events_and_resumes(client: TestClient, project: str) -> None:
    refs = [await run_publish(client, project, f"r{i}.txt") for i in range(3)]
    # A client connecting after the events still gets them, from the table.
    stream = await open_stream(client, project)
    frames = [await next_event(stream) for _ in refs]
    assert [f.data["artifact"]["id"] for f in frames] == [r["id"] for r in refs]
    stream.close()
    # Last-Event-ID resumes after the given event and wins over ?after.
    resumed = await open_stream(
        client, project, {**READER, "Last-Event-ID": frames[0].fields["id"]}, after=0
    )
    assert (await next_event(resumed)).data["artifact"]["id"] == refs[1]["id"]
    assert (await next_event(resumed)).data["artifact"]["id"] == refs[2]["id"]
    later = await run_publish(client, project, "later.txt")
    assert (await next_event(resumed)).data["artifact"]["id"] == later["id"]
    resumed.close()
    # ?after works too, and ?type applies to the stream.
    after = await open_stream(client, project, after=frames[1].fields["id"])
    assert (await next_event(after)).data["artifact"]["id"] == refs[2]["id"]
    after.close()


async def test_notify_crosses_replicas(make_client: MakeClient, project: str) -> None:
    publisher, watcher = await make_client(), await make_client()
    stream = await open_stream(watcher, project)
    await asyncio.sleep(0.1)
    ref = await run_publish(publisher, project, "replica.txt")
    frame = await next_event(stream, timeout=3.0)
    assert frame.data["artifact"]["id"] == ref["id"]
    stream.close()


async def test_heartbeats_when_idle(make_client: MakeClient, project: str) -> None:
    client = await make_client(heartbeat=0.2)
    stream = await open_stream(client, project)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(2):
        frame = await next_frame(stream, timeout=2.0)
        assert frame.comments == ["keep-alive"] and not frame.fields
    assert loop.time() - started < 1.5
    stream.close()


async def test_heartbeat_tick_rereads_the_table(
    make_client: MakeClient, project: str, db: asyncpg.Connection
) -> None:
    """An event whose NOTIFY never came still arrives, on the next heartbeat tick."""
    client = await make_client(heartbeat=0.2)
    ref = await run_publish(client, project)
    stream = await open_stream(client, project)
    assert (await next_event(stream)).data["artifact"]["id"] == ref["id"]
    await record_deletion(db, project, ref["id"])  # no pg_notify
    frame = await next_event(stream, timeout=2.0)
    assert frame.fields["event"] == "artifact.deleted"
    assert frame.data["artifact"]["id"] == ref["id"]
    stream.close()


async def test_stream_ends_when_client_leaves(make_client: MakeClient, project: str) -> None:
    client = await make_client(heartbeat=0.2)
    hub = client.app[EVENT_HUB]
    stream = await open_stream(client, project)
    await eventually(lambda: hub.subscriber_count(project) == 1)
    stream.close()
    await eventually(lambda: hub.subscriber_count(project) == 0)


async def test_shutdown_ends_open_streams(make_client: MakeClient, project: str) -> None:
    client = await make_client()  # a 60 s heartbeat: only the shutdown can end the stream
    stream = await open_stream(client, project)
    hub = client.app[EVENT_HUB]
    await eventually(lambda: hub.subscriber_count(project) == 1)
    async with asyncio.timeout(5):
        await client.server.close()
        assert await stream.content.read() == b""  # a clean end of the stream
    assert hub.subscriber_count() == 0 and hub.server_pid is None


async def test_listener_reconnects_after_losing_its_connection(
    client: TestClient, project: str, db: asyncpg.Connection
) -> None:
    hub = client.app[EVENT_HUB]
    await eventually(lambda: hub.server_pid is not None)
    old_pid = hub.server_pid
    assert await db.fetchval("SELECT pg_terminate_backend($1)", old_pid)
    await eventually(lambda: hub.server_pid not in (None, old_pid))
    stream = await open_stream(client, project)
    await asyncio.sleep(0.1)
    ref = await run_publish(client, project, "after-reconnect.txt")
    assert (await next_event(stream, timeout=3.0)).data["artifact"]["id"] == ref["id"]
    stream.close()


async def test_an_events_artifact_is_the_artifact_as_read_at_that_moment(
    client: TestClient, project: str
) -> None:
    """One shape: the artifact of artifact.created (paged and live) equals GET right
    after the publish, and the artifact of artifact.deleted equals GET of the
    tombstone; listing items are that same shape."""
    claim = await new_claim(client, project)
    parent = await (await publish(client, project, lease(claim), filename="p.txt")).json()
    resp = await publish(
        client,
        project,
        lease(claim),
        filename="shape.md",
        description="the shape",
        metadata=json.dumps({"k": [1, {"v": "x"}]}),
        derived_from=json.dumps([parent["id"]]),
    )
    ref = await resp.json()
    url = f"/v1/projects/{project}/artifacts/{ref['id']}"
    created = await (await client.get(url, headers=READER)).json()
    assert created["description"] == "the shape" and created["derived_from"] == [parent["id"]]
    listed = await (await client.get(f"/v1/projects/{project}/artifacts", headers=READER)).json()
    assert next(i for i in listed["items"] if i["id"] == ref["id"]) == created

    assert (await client.delete(url, headers=ADMIN)).status == 204
    tombstone = await (await client.get(url, headers=READER)).json()
    assert tombstone["state"] == "deleted" and tombstone["deleted_at"]

    page = await feed(client, events_url(project))
    mine = {
        item["type"]: item["artifact"]
        for item in page["items"]
        if item["artifact"]["id"] == ref["id"]
    }
    assert mine["artifact.created"] == created
    assert mine["artifact.deleted"] == tombstone

    stream = await open_stream(client, project)
    frames = [await next_event(stream) for _ in range(3)]
    stream.close()
    live = {
        f.data["type"]: f.data["artifact"] for f in frames if f.data["artifact"]["id"] == ref["id"]
    }
    assert live == {"artifact.created": created, "artifact.deleted": tombstone}
