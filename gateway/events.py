"""The events feed: outbox queries, and the LISTEN/NOTIFY hub that wakes live streams.

Every ``artifact.created`` / ``artifact.deleted`` is an ``events`` row written in
the transaction of the change, with a per-project increasing ``seq``, announced
with ``pg_notify('gateway_events', '<project>:<seq>')``. The table is the source
of truth: a reader pages it by ``seq``, and a live stream re-reads it after its
cursor whenever the hub wakes it and on every heartbeat tick, so a missed
notification delays an event by at most one heartbeat and never loses it.

One dedicated asyncpg connection per process LISTENs (never one per client). The
:class:`EventHub` fans its notifications out to the subscribers of the notified
project, reconnects with backoff when the connection drops (waking every
subscriber once it is back, since notifications sent meanwhile are gone), and
on shutdown closes every subscription so no stream holds the process up.

The same connection LISTENs on :data:`leases.CLAIMS_CHANNEL` for the process's
:class:`~leases.ClaimCache`: a released or superseded claim's lease id evicts
its entry, and the cache is enabled only while the connection is up (and
emptied whenever it goes up or down, since notifications may have been missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg

from gateway.artifacts import with_metadata
from gateway.db import events as event_rows
from gateway.db.events import EVENT_TYPES, EVENTS_CHANNEL, FeedQuery
from gateway.errors import DB_UNAVAILABLE
from gateway.jsonio import rfc3339, stored_json
from gateway.logs import get_logger
from gateway.rows import EventRow
from leases import CLAIMS_CHANNEL, ClaimCache

log = get_logger("gateway.events")

__all__ = ["EVENT_TYPES", "EventHub", "FeedQuery", "Subscription", "fetch_page", "item"]
HEARTBEAT_SECONDS = 15.0
"""Idle streams get a ``: keep-alive`` comment (and re-read the table) this often."""
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
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


class Subscription:
    """A live stream's wake-up flag, set by the hub when its project has news."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.closed = False
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """The hub is going away: the stream should end."""
        self.closed = True
        self._wake.set()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for news; True when woken, False on timeout."""
        if not self._wake.is_set() and timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        woken = self._wake.is_set()
        self._wake.clear()
        return woken


class EventHub:
    """One LISTEN connection per process, fanned out to per-project subscribers."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        connect_timeout: float = 10.0,
        channel: str = EVENTS_CHANNEL,
        claims: ClaimCache | None = None,
    ) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self._claims = claims
        self._connect_one = connect
        self._timeout = connect_timeout
        self._channel = channel
        self._subscribers: dict[str, set[Subscription]] = {}
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
        """Open subscriptions of ``project``, or of every project."""
        if project is not None:
            return len(self._subscribers.get(project, ()))
        return sum(len(subs) for subs in self._subscribers.values())

    @contextlib.contextmanager
    def subscribe(self, project: str) -> Iterator[Subscription]:
        """A subscription to ``project`` for the duration of the block."""
        sub = Subscription(project)
        if self._closed:
            sub.close()
        subs = self._subscribers.setdefault(project, set())
        subs.add(sub)
        try:
            yield sub
        finally:
            subs.discard(sub)
            if not subs and self._subscribers.get(project) is subs:
                del self._subscribers[project]

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
        for subs in self._subscribers.values():
            for sub in subs:
                sub.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    def _wake_all(self) -> None:
        for subs in self._subscribers.values():
            for sub in subs:
                sub.wake()

    def _on_claim_ended(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if self._claims is not None:
            self._claims.evict(payload)

    def _claims_enabled(self, enabled: bool) -> None:
        if self._claims is not None:
            self._claims.set_enabled(enabled)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        project, sep, _seq = payload.rpartition(":")
        for sub in self._subscribers.get(project if sep else payload, ()):
            sub.wake()

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
