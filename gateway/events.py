"""The events feed: outbox queries, and the hub that feeds live streams.

Every ``artifact.created`` / ``artifact.deleted`` is an ``events`` row written in
the transaction of the change, with a per-project increasing ``seq``, announced
with ``pg_notify('gateway_events', '<project>:<seq>')``. The table is the source
of truth.

One dedicated asyncpg connection per process LISTENs (never one per client). The
:class:`EventHub` keeps one :class:`ProjectFeed` per project with open streams:
on each notification (and each heartbeat tick, so a missed notification delays
an event by at most one tick and never loses it) the feed reads the new events
once, frames them once and offers them to every :class:`Stream` of the
project, each of which keeps those its viewer may see. A stream replays what
lies before the feed's head from the table itself, a page at a time. Streams and
feeds read through a small pool of their own, never the publish path's; the
caps of :class:`StreamLimits` bound how many streams a principal or a project
may hold open, and how far a stream may fall behind.

The hub reconnects with backoff when the connection drops (poking every feed
once it is back, since notifications sent meanwhile are gone), and on shutdown
ends every stream so no stream holds the process up.

The same connection LISTENs on :data:`leases.CLAIMS_CHANNEL` for the process's
:class:`~leases.ClaimCache`: a released or superseded claim's lease id evicts
its entry, and the cache is enabled only while the connection is up (and
emptied whenever it goes up or down, since notifications may have been missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.artifacts import with_metadata
from gateway.config import Config
from gateway.db import events as event_rows
from gateway.db.events import EVENT_TYPES, EVENTS_CHANNEL, FeedQuery
from gateway.errors import DB_UNAVAILABLE, EventsExpired
from gateway.jsonio import rfc3339, stored_json
from gateway.logs import get_logger
from gateway.numbers import parse_decimal
from gateway.rows import EventRow
from leases import CLAIMS_CHANNEL, ClaimCache

log = get_logger("gateway.events")

__all__ = [
    "EVENT_TYPES",
    "EventHub",
    "FeedQuery",
    "StreamLimits",
    "StreamsExhausted",
    "fetch_page",
    "item",
]
HEARTBEAT_SECONDS = 15.0
"""Idle streams get a ``: keep-alive`` comment this often; each project's feed re-reads
the table on the same tick."""
HEARTBEAT_FRAME = b": keep-alive\n\n"
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
REPLAY_PAGE = 100
"""Events a stream reads from the table at a time while it replays (and holds at most)."""
FANOUT_PAGE = 100
"""Events a project's feed reads at a time, for all of its streams."""
RETRY_SECONDS = 1.0
"""How soon a stream whose replay read failed tries again."""
KEEPALIVE_SECONDS = 30.0
"""How often the idle listener connection is probed with ``SELECT 1``."""
BACKOFF_MIN_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 30.0
READ_ERRORS: tuple[type[BaseException], ...] = (*DB_UNAVAILABLE, asyncpg.PostgresError)
"""What a failed read of the table (or of the listener connection) may raise."""


def item(row: EventRow) -> dict[str, Any]:
    """An event as the feed shows it: ``{seq, type, artifact, at}``.

    The artifact's metadata is read apart from the rest of the payload, so a
    stored document that cannot be served costs only that field (see
    :func:`gateway.artifacts.with_metadata`), never the event or its page.
    """
    artifact, readable = stored_json(row.payload)
    if not readable or not isinstance(artifact, dict):
        log.warning("events.payload_unreadable", seq=row.seq)
        artifact = {"type": "artifact", "id": row.artifact_id, "payload_omitted": "unreadable"}
    return {
        "seq": row.seq,
        "type": row.type,
        "artifact": with_metadata(artifact, row.metadata),
        "at": rfc3339(row.created_at),
    }


async def fetch_page(conn: Any, query: FeedQuery) -> list[dict[str, Any]]:
    """One page of the feed (:func:`gateway.db.events.page`) as the feed shows it."""
    return [item(row) for row in await event_rows.page(conn, query)]


async def ensure_kept(conn: Any, query: FeedQuery) -> None:
    """410 ``events_expired`` when a resumed feed (``after`` > 0) would have a gap:
    events after ``query.after`` were pruned. ``after=0`` (the default) asks for
    everything kept and starts at the oldest event kept. Checked after a page is
    read, the page cannot hide a gap (the pruning raises the horizon in the
    statement that deletes)."""
    if query.after == 0:
        return
    horizon = await event_rows.pruned_seq(conn, query.project)
    if query.after < horizon:
        raise EventsExpired(
            f"events up to seq {horizon} are no longer kept; re-list, then follow the "
            f"feed from seq {horizon} or later",
            extra={"pruned_seq": horizon},
        )


@dataclass(frozen=True, kw_only=True)
class StreamLimits:
    """What live streams may take of a process (each replica counts its own)."""

    per_principal: int = Config.event_streams_per_principal
    """Concurrent streams of one principal (``sub``)."""
    per_project: int = Config.event_streams_per_project
    """Concurrent streams of one project."""
    queue_events: int = Config.event_stream_queue_events
    """Events a stream may have waiting behind a slow consumer before it is ended."""


STREAM_END_REASONS: dict[str, tuple[str, str]] = {
    "token_expired": (
        "Token expired",
        "the stream's token has expired; reconnect with a new one and Last-Event-ID",
    ),
    "slow_consumer": (
        "Consumer too slow",
        "the client read the stream too slowly to keep up; reconnect with Last-Event-ID",
    ),
}
"""Why the gateway ends a stream with a final ``event: error`` (code → title, detail).
A stream also ends, without that event, when the process shuts down."""


class StreamsExhausted(Exception):
    """A new stream would exceed a :class:`StreamLimits` cap (``scope``: principal|project)."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"at most {limit} concurrent event streams per {scope} on this replica")
        self.scope = scope
        self.limit = limit


def sse_frame(event: dict[str, Any]) -> bytes:
    """An event as one server-sent event: ``id: <seq>``, ``event: <type>``, ``data: <json>``."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {data}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Fanned:
    """An event as the hub hands it to every stream of its project: read and framed once."""

    seq: int
    type: str
    owner_kind: str
    owner_id: str
    frame: bytes


class ProjectFeed:
    """The streams of one project, and the one reader that feeds them all.

    Its task reads the table after :attr:`head` whenever a notification (or a
    reconnection of the listener) pokes it, and on every heartbeat tick (a
    missed notification costs at most one tick), then offers each event, framed
    once, to every stream of the project. A new feed first learns the newest
    ``seq`` (:attr:`established`): streams replay what lies before it themselves.
    """

    def __init__(self, project: str, pool: Any, heartbeat_seconds: float) -> None:
        self.project = project
        self.head: int | None = None
        self.established = asyncio.Event()
        self.streams: set[Stream] = set()
        self._pool = pool
        self._heartbeat = heartbeat_seconds
        self._dirty = asyncio.Event()
        self._dirty.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name=f"events-feed:{self.project}")

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the reader; its task, to await when the caller can."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    def poke(self, seq: int | None = None) -> None:
        """News: an event ``seq`` (None: anything) may lie beyond :attr:`head`."""
        if seq is None or self.head is None or seq > self.head:
            self._dirty.set()

    async def _pump(self) -> None:
        delay = BACKOFF_MIN_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat):
                    await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._read()
            except Exception as exc:  # the feed must outlive any one failure
                if isinstance(exc, READ_ERRORS):
                    log.warning("events.feed_read_failed", error=type(exc).__name__, retry_in=delay)
                else:
                    log.exception("events.feed_failed", retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._heartbeat)
                self._dirty.set()
                continue
            delay = BACKOFF_MIN_SECONDS

    async def _read(self) -> None:
        if self.head is None:
            self.head = await event_rows.newest_seq(self._pool, self.project)
            self.established.set()
            return
        while True:
            rows = await event_rows.every_after(self._pool, self.project, self.head, FANOUT_PAGE)
            if rows:
                batch = [
                    Fanned(
                        seq=owned.row.seq,
                        type=owned.row.type,
                        owner_kind=owned.owner_kind,
                        owner_id=owned.owner_id,
                        frame=sse_frame(item(owned.row)),
                    )
                    for owned in rows
                ]
                self.head = batch[-1].seq
                for stream in list(self.streams):
                    stream.offer(batch)
            if len(rows) < FANOUT_PAGE:
                return


class Stream:
    """One live stream: its cursor, the events waiting for it, and why it ended.

    :meth:`chunks` yields what to write: first the events after the cursor,
    replayed from the table a page of :data:`REPLAY_PAGE` at a time (never more
    in hand), then the events its project's feed offers, as they come. Offers
    that arrive during the replay wait in the queue; should they overflow it,
    they are dropped and the replay simply goes on (the table has them). Once
    live, a queue past its bound means the consumer cannot keep up: the stream
    is ended (``slow_consumer``) rather than let it grow.
    """

    def __init__(
        self,
        hub: EventHub,
        feed: ProjectFeed,
        query: FeedQuery,
        principal: str,
        queue_events: int,
    ) -> None:
        self.query = query
        self.principal = principal
        self.ended: str | None = None
        """Why the hub ended the stream: a :data:`STREAM_END_REASONS` code, or ``closed``."""
        self._hub = hub
        self._feed = feed
        self._queue: deque[Fanned] = deque()
        self._queue_max = queue_events
        self._live = False
        self._overflowed = False
        self._wake = asyncio.Event()
        self._on_end: Callable[[], None] | None = None

    @property
    def project(self) -> str:
        return self.query.project

    @property
    def closed(self) -> bool:
        return self.ended is not None

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._on_end = None
        self._hub._leave(self)

    def on_end(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` (once) when the hub ends the stream, e.g. to stop a blocked write."""
        self._on_end = callback

    def end(self, reason: str) -> None:
        if self.ended is not None:
            return
        self.ended = reason
        self._queue.clear()
        self._wake.set()
        callback, self._on_end = self._on_end, None
        if callback is not None:
            try:
                callback()
            except Exception:  # never let one stream's end cost the others their events
                log.exception("events.stream_end_failed")

    def offer(self, batch: list[Fanned]) -> None:
        """The feed's new events; those this stream's viewer and filter want are queued."""
        if self.ended is not None:
            return
        query, queue = self.query, self._queue
        for fanned in batch:
            if (
                fanned.seq > query.after
                and (query.event_type is None or fanned.type == query.event_type)
                and query.viewer.sees(fanned.owner_kind, fanned.owner_id)
            ):
                queue.append(fanned)
        if len(queue) > self._queue_max:
            if self._live:
                log.info("events.stream_too_slow", queued=len(queue), last_seq=query.after)
                self.end("slow_consumer")
                return
            queue.clear()
            self._overflowed = True
        if queue:
            self._wake.set()

    async def _wait(self, timeout: float) -> None:
        if not self._wake.is_set() and timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        self._wake.clear()

    async def _wait_established(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._feed.established.wait()

    async def _replay_page(self) -> list[dict[str, Any]] | None:
        """The next page after the cursor; None when the database failed."""
        try:
            async with self._hub._replays:
                return await fetch_page(
                    self._hub.pool, dataclasses.replace(self.query, limit=REPLAY_PAGE)
                )
        except READ_ERRORS as exc:
            log.warning("events.stream_read_failed", error=type(exc).__name__)
            return None

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """What to write, in order: event frames (joined) and keep-alive comments."""
        loop = asyncio.get_running_loop()
        heartbeat = self._hub.heartbeat_seconds
        last_write = loop.time()
        while self.ended is None:
            if not self._live:
                if self._feed.established.is_set():
                    page = await self._replay_page()
                    if page:
                        self.query = self.query.following(page[-1]["seq"])
                        yield b"".join(sse_frame(event) for event in page)
                        last_write = loop.time()
                    if page is not None and len(page) == REPLAY_PAGE:
                        continue  # the next page
                    if page is not None:
                        # Caught up with the table as read after the feed's head was
                        # known: what came since waits in the queue, unless it overflowed
                        # (then another pass reads it from the table).
                        if self._overflowed:
                            self._overflowed = False
                        else:
                            self._live = True
                        continue
            else:
                ready = [fanned for fanned in self._queue if fanned.seq > self.query.after]
                self._queue.clear()
                if ready:
                    self.query = self.query.following(ready[-1].seq)
                    yield b"".join(fanned.frame for fanned in ready)
                    last_write = loop.time()
                    continue
            remaining = last_write + heartbeat - loop.time()
            if remaining <= 0:
                yield HEARTBEAT_FRAME
                last_write, remaining = loop.time(), heartbeat
            if self._live:
                await self._wait(remaining)
            elif not self._feed.established.is_set():
                await self._wait_established(remaining)
            else:  # the database failed the replay: try again shortly
                await asyncio.sleep(min(remaining, RETRY_SECONDS))


class EventHub:
    """One LISTEN connection per process, fanned out to per-project subscribers."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        pool: Any = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        connect_timeout: float = 10.0,
        channel: str = EVENTS_CHANNEL,
        claims: ClaimCache | None = None,
        limits: StreamLimits | None = None,
        replay_concurrency: int = 1,
    ) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.pool = pool
        """What streams and feeds read the table through (the streams' own pool)."""
        self.limits = limits or StreamLimits()
        self._replays = asyncio.Semaphore(max(1, replay_concurrency))
        self._claims = claims
        self._connect_one = connect
        self._timeout = connect_timeout
        self._channel = channel
        self._feeds: dict[str, ProjectFeed] = {}
        self._per_principal: dict[str, int] = {}
        self._conn: Any = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connected = asyncio.Event()
        """Set while the listener connection is up (for readiness and tests)."""

    @property
    def server_pid(self) -> int | None:
        """The Postgres backend pid of the listener connection, when connected."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    def subscriber_count(self, project: str | None = None) -> int:
        """Open streams of ``project``, or of every project."""
        if project is not None:
            feed = self._feeds.get(project)
            return 0 if feed is None else len(feed.streams)
        return sum(len(feed.streams) for feed in self._feeds.values())

    def feed_count(self) -> int:
        """Projects with at least one open stream (each has one reader)."""
        return len(self._feeds)

    def admit(self, query: FeedQuery, principal: str) -> Stream:
        """A new stream of ``query.project`` for ``principal`` (use it as a context
        manager); :class:`StreamsExhausted` when a cap of :attr:`limits` is reached."""
        limits = self.limits
        if self._per_principal.get(principal, 0) >= limits.per_principal:
            raise StreamsExhausted("principal", limits.per_principal)
        feed = self._feeds.get(query.project)
        if feed is not None and len(feed.streams) >= limits.per_project:
            raise StreamsExhausted("project", limits.per_project)
        if feed is None:
            feed = ProjectFeed(query.project, self.pool, self.heartbeat_seconds)
            self._feeds[query.project] = feed
            if not self._closed:
                feed.start()
        stream = Stream(self, feed, query, principal, limits.queue_events)
        feed.streams.add(stream)
        self._per_principal[principal] = self._per_principal.get(principal, 0) + 1
        if self._closed:
            stream.end("closed")
        return stream

    def _leave(self, stream: Stream) -> None:
        feed = self._feeds.get(stream.project)
        if feed is None or stream not in feed.streams:
            return
        feed.streams.discard(stream)
        left = self._per_principal.get(stream.principal, 0) - 1
        if left > 0:
            self._per_principal[stream.principal] = left
        else:
            self._per_principal.pop(stream.principal, None)
        if not feed.streams:
            feed.stop()
            del self._feeds[stream.project]

    async def start(self) -> None:
        """Connect (one attempt, inline) and keep the connection up in the background."""
        try:
            conn = await self._connect()
        except READ_ERRORS as exc:
            log.warning("events.listener_connect_failed", error=type(exc).__name__)
            conn = None
        self._task = asyncio.create_task(self._run(conn), name="events-listener")

    async def close(self) -> None:
        """End every subscription, stop listening and close the connection. Idempotent."""
        self._closed = True
        readers = []
        for feed in self._feeds.values():
            readers.append(feed.stop())
            for stream in list(feed.streams):
                stream.end("closed")
        await asyncio.gather(
            *(task for task in readers if task is not None), return_exceptions=True
        )
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    def _wake_all(self) -> None:
        for feed in self._feeds.values():
            feed.poke()

    def _on_claim_ended(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if self._claims is not None:
            self._claims.evict(payload)

    def _claims_enabled(self, enabled: bool) -> None:
        if self._claims is not None:
            self._claims.set_enabled(enabled)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        project, sep, seq = payload.rpartition(":")
        feed = self._feeds.get(project if sep else payload)
        if feed is not None:
            feed.poke(parse_decimal(seq) if sep else None)

    async def _connect(self) -> Any:
        async with asyncio.timeout(self._timeout):
            conn = await self._connect_one()
        try:
            await conn.add_listener(self._channel, self._on_notify)
            if self._claims is not None:
                await conn.add_listener(CLAIMS_CHANNEL, self._on_claim_ended)
        except BaseException:
            conn.terminate()
            raise
        lost = asyncio.Event()

        def on_termination(_conn: Any) -> None:
            lost.set()
            self.connected.clear()
            self._claims_enabled(False)

        conn.add_termination_listener(on_termination)
        self._conn, self._lost = conn, lost
        self.connected.set()
        self._claims_enabled(True)
        log.info("events.listener_connected", pid=conn.get_server_pid())
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.connected.clear()
        self._claims_enabled(False)
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=self._timeout)
        except Exception:
            conn.terminate()

    async def _run(self, conn: Any) -> None:
        """Keep one LISTEN connection up: probe it when idle, reconnect with backoff."""
        delay = BACKOFF_MIN_SECONDS
        while not self._closed:
            if conn is None:
                try:
                    conn = await self._connect()
                except Exception as exc:  # keep trying, whatever the cause
                    log.warning(
                        "events.listener_connect_failed", error=type(exc).__name__, retry_in=delay
                    )
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, BACKOFF_MAX_SECONDS)
                    continue
                delay = BACKOFF_MIN_SECONDS
                self._wake_all()  # notifications sent while disconnected are lost
            await self._watch(conn)
            log.warning("events.listener_lost")
            await self._drop()
            conn = None

    async def _watch(self, conn: Any) -> None:
        """Return once ``conn`` is lost: closed under us, or failing an idle probe."""
        while not conn.is_closed():
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    await self._lost.wait()
                return
            except TimeoutError:
                pass
            try:
                await conn.fetchval("SELECT 1", timeout=self._timeout)
            except READ_ERRORS:
                return
