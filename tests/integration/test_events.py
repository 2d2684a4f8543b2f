"""The events feed against real Postgres and SeaweedFS: paged JSON and live SSE."""

from __future__ import annotations

import asyncio
import contextlib
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

    async def make(heartbeat: float = QUIET, **overrides: Any) -> TestClient:
        app = create_app(config.with_overrides(**overrides))
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


async def record_events(
    db: asyncpg.Connection, project: str, artifact_id: str, count: int, *, pad: int = 0
) -> None:
    """``count`` more ``artifact.deleted`` rows of one artifact in one transaction (each
    ``pad`` characters fatter), announced by one NOTIFY, as a burst of changes would be."""
    async with db.transaction():
        seq = await db.fetchval(
            "UPDATE projects SET event_seq = event_seq + $2 WHERE project_id = $1"
            " RETURNING event_seq",
            project,
            count,
        )
        await db.execute(
            """
            INSERT INTO events (project_id, seq, type, artifact_id, payload)
            SELECT $1, $3 - $4 + n, 'artifact.deleted', $2,
                jsonb_set(e.payload, '{description}', to_jsonb(repeat('x', $5)))
            FROM generate_series(1, $4) AS n, events e
            WHERE e.project_id = $1 AND e.artifact_id = $2 AND e.type = 'artifact.created'
            """,
            project,
            artifact_id,
            seq,
            count,
            pad,
        )
        await db.execute("SELECT pg_notify('gateway_events', $1)", f"{project}:{seq}")


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


# --- a stream never outlives its token -----------------------------------------


async def test_a_stream_ends_when_its_token_expires(make_client: MakeClient, project: str) -> None:
    """A stream of a short-lived token gets a final ``event: error`` (token_expired)
    at the token's expiry, then its end, though events keep coming and nothing else
    (a 60 s heartbeat) would wake it; a plain request with the token is refused then."""
    client = await make_client(auth_leeway_seconds=0)
    token = bearer(principal_token("user:brief", "artifacts:read", ttl=2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    stream = await open_stream(client, project, token)
    ref = await run_publish(client, project, "before.txt")
    assert (await next_event(stream)).data["artifact"]["id"] == ref["id"]
    final = await next_event(stream, timeout=6.0)
    assert loop.time() - started < 5.0
    assert final.fields["event"] == "error" and "id" not in final.fields
    problem = final.data
    assert problem["code"] == "token_expired"
    assert problem["type"].endswith("/token-expired") and problem["title"] and problem["detail"]
    assert await stream.content.read() == b""  # and then the stream ends
    resp = await client.get(events_url(project), headers=token)
    assert resp.status == 401 and (await resp.json())["code"] == "unauthenticated"
    hub = client.app[EVENT_HUB]
    assert hub.subscriber_count(project) == 0


async def test_a_blocked_stream_ends_at_its_tokens_expiry_too(
    make_client: MakeClient, project: str, db: asyncpg.Connection
) -> None:
    """The end is scheduled, not only checked between events: a stream whose client
    stopped reading mid-replay (the server's write blocked) ends at the expiry too,
    though the client never reads again."""
    client = await make_client(auth_leeway_seconds=0)
    hub = client.app[EVENT_HUB]
    ref = await run_publish(client, project)
    await record_events(db, project, ref["id"], 400, pad=64 * 1024)  # 26 MB to replay
    token = bearer(principal_token("user:brief", "artifacts:read", ttl=2))
    stream = await open_stream(client, project, token)
    await eventually(lambda: hub.subscriber_count(project) == 1)
    await eventually(lambda: hub.subscriber_count(project) == 0, timeout=8)
    received = 0
    with contextlib.suppress(aiohttp.ClientPayloadError, EOFError, TimeoutError):
        while "data" in (await next_frame(stream, timeout=5.0)).fields:
            received += 1
    assert received < 401
    stream.close()


# --- what streams may take of a replica ----------------------------------------


async def test_streams_are_capped_per_principal_and_per_project(
    make_client: MakeClient, project: str
) -> None:
    client = await make_client(event_streams_per_principal=2, event_streams_per_project=3)
    alice = bearer(principal_token("user:alice", "artifacts:read"))
    bob = bearer(principal_token("user:bob", "artifacts:read"))
    carol = bearer(principal_token("user:carol", "artifacts:read"))
    other = "prj-other-" + project[-6:]
    open_ones = [await open_stream(client, project, alice) for _ in range(2)]

    async def refused(headers: dict[str, str], where: str, scope: str) -> None:
        resp = await client.get(events_url(where), headers={**headers, **SSE})
        assert resp.status == 429, await resp.text()
        assert resp.content_type == "application/problem+json"
        assert int(resp.headers["Retry-After"]) > 0
        body = await resp.json()
        assert body["code"] == "rate_limited" and f"per {scope}" in body["detail"]

    await refused(alice, project, "principal")  # a third of alice's
    await refused(alice, other, "principal")  # in any project
    open_ones.append(await open_stream(client, project, bob))
    await refused(bob, project, "project")  # the project's third is taken
    await refused(carol, project, "project")
    open_ones.append(await open_stream(client, other, carol))  # another project is not
    # The JSON page is no stream: never capped.
    assert (await client.get(events_url(project), headers=alice)).status == 200
    hub = client.app[EVENT_HUB]
    open_ones[0].close()
    await eventually(lambda: hub.subscriber_count(project) == 2)
    open_ones.append(await open_stream(client, project, carol))  # a freed place is taken
    for stream in open_ones:
        stream.close()
    await eventually(lambda: hub.subscriber_count() == 0)


async def test_a_replay_from_seq_0_is_complete_and_in_order_through_paging(
    make_client: MakeClient, project: str, db: asyncpg.Connection
) -> None:
    """Thousands of past events replay page by page, and events committed meanwhile
    join after them: each exactly once, in seq order, with no gap."""
    client = await make_client()
    ref = await run_publish(client, project)
    await record_events(db, project, ref["id"], 1500)
    stream = await open_stream(client, project, after=0)
    seqs: list[int] = []
    async with asyncio.timeout(60):
        while len(seqs) < 1501:
            frame = await next_event(stream, timeout=10.0)
            seqs.append(int(frame.fields["id"]))
            if len(seqs) in (50, 700, 1400):  # more arrive during the replay
                await record_events(db, project, ref["id"], 100)
        while len(seqs) < 1801:
            seqs.append(int((await next_event(stream, timeout=10.0)).fields["id"]))
    stream.close()
    newest = await db.fetchval("SELECT max(seq) FROM events WHERE project_id = $1", project)
    first = await db.fetchval("SELECT min(seq) FROM events WHERE project_id = $1", project)
    assert seqs == list(range(first, newest + 1))
    assert len(seqs) == 1801


async def test_a_slow_consumer_is_ended_with_a_final_event(
    make_client: MakeClient, project: str, db: asyncpg.Connection
) -> None:
    """A client that stops reading while events flow is not buffered for: once more
    than GATEWAY_EVENT_STREAM_QUEUE_EVENTS wait behind it, its stream ends, with a
    final ``event: error`` (slow_consumer) after the events it was sent."""
    client = await make_client(event_stream_queue_events=5)
    hub = client.app[EVENT_HUB]
    ref = await run_publish(client, project)
    stream = await open_stream(client, project)
    assert (await next_event(stream)).data["artifact"]["id"] == ref["id"]  # live now
    # Far more than the sockets' buffers hold: the server's writes block, the queue grows.
    for _ in range(6):
        await record_events(db, project, ref["id"], 50, pad=64 * 1024)
    await eventually(lambda: hub.subscriber_count(project) == 0, timeout=20)
    seqs: list[int] = []
    async with asyncio.timeout(20):
        while True:
            frame = await next_event(stream, timeout=10.0)
            if frame.fields["event"] == "error":
                break
            seqs.append(int(frame.fields["id"]))
    assert frame.data["code"] == "slow_consumer"
    assert seqs == sorted(seqs) and len(seqs) < 300
    assert await stream.content.read() == b""


async def test_many_streams_do_not_slow_another_projects_publish(
    make_client: MakeClient, project: str, db: asyncpg.Connection
) -> None:
    """100 streams (the rest refused) on two busy projects, 20 events a second: every
    stream gets every event, read once per project, and a publish to a third project
    stays fast (p95 under a generous 1 s on a loaded machine)."""
    client = await make_client(heartbeat=1.0)
    hub = client.app[EVENT_HUB]
    busy = [project, "prj-busy-" + project[-6:]]
    refs = {p: await run_publish(client, p) for p in busy}
    quiet = "prj-quiet-" + project[-6:]
    readers = [bearer(principal_token(f"user:r{i}", "artifacts:read")) for i in range(8)]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def open_one(where: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
            return await session.get(client.make_url(events_url(where)), headers={**headers, **SSE})

        streams = []

        async def attempt(where: str, headers: dict[str, str], refused_for: str = "") -> None:
            resp = await open_one(where, headers)
            if not refused_for:
                assert resp.status == 200, await resp.text()
                streams.append(resp)
                return
            assert resp.status == 429 and (await resp.json())["code"] == "rate_limited"
            assert f"per {refused_for}" in (await resp.json())["detail"]
            resp.close()

        for i in range(64):  # five principals fill the first project
            await attempt(busy[0], readers[i % 5])
        for i in range(3):
            await attempt(busy[0], readers[5 + i % 2], "project")
        for i in range(36):  # three more principals take 36 streams of the second (16, 16, 4)
            await attempt(busy[1], readers[5 + i // 16])
        await attempt(busy[1], readers[5], "principal")  # readers[5] holds 16
        assert hub.subscriber_count() == 100 and hub.feed_count() == 2
        for resp in streams:  # every stream is live: it has the project's first event
            assert (await next_event(resp, timeout=10.0)).data["artifact"]["id"]

        counts = [0] * len(streams)

        async def drain(index: int, resp: aiohttp.ClientResponse) -> None:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                while True:
                    if "data" in (await next_frame(resp, timeout=30.0)).fields:
                        counts[index] += 1

        readers_tasks = [asyncio.create_task(drain(i, r)) for i, r in enumerate(streams)]

        async def flow() -> None:
            for _ in range(12):  # 20 events a second for 6 s, on both projects
                for where in busy:
                    await record_events(db, where, refs[where]["id"], 5)
                await asyncio.sleep(0.5)

        flowing = asyncio.create_task(flow())
        latencies = []
        loop = asyncio.get_running_loop()
        while not flowing.done():
            started = loop.time()
            await run_publish(client, quiet)
            latencies.append(loop.time() - started)
        await flowing
        await eventually(lambda: all(c == 60 for c in counts), timeout=30)
        for task in readers_tasks:
            task.cancel()
        await asyncio.gather(*readers_tasks, return_exceptions=True)
        for resp in streams:
            resp.close()
    latencies.sort()
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    assert len(latencies) >= 5 and p95 < 1.0, (
        f"publish p95 with 100 streams and 20 events/s: {p95 * 1000:.0f} ms"
    )
