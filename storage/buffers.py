"""A process-wide budget of reusable part buffers.

A streaming upload copies the incoming chunks into a preallocated part buffer
and hands the full buffer to a part upload. Without a shared budget, every
concurrent upload could hold ``part_concurrency + 1`` buffers (64 uploads x
5 x 8 MiB = 2.5 GiB); with it, an upload that needs a new buffer waits until one
is free, which stops it from reading its client socket and so back-pressures the
client.

The pool hands out at most ``capacity`` buffers of ``buffer_size`` bytes at a
time, in FIFO order of the requests (a released buffer goes to the longest
waiter, so small and large uploads cannot starve each other). A request may
name an ``owner`` (the store's caller passes who the upload is for); one owner
holds at most ``owner_limit`` buffers at once, so one tenant's uploads, however
many or slow, queue against its own share and leave the rest to the others. A
waiter whose owner is at its limit is passed over, not blocking the waiters
behind it; among one owner's requests the order stays FIFO. A request that gets
no buffer within ``wait_seconds`` fails with
:class:`~storage.errors.StorageBusy` instead of waiting for ever. Released
buffers are kept and reused: allocating and freeing multi-megabyte buffers per
part makes glibc ``malloc`` map and unmap (and page-fault) them every time.
When the pool has been completely idle for ``idle_release_seconds`` it drops
its spare buffers so an idle process does not keep the peak in memory.

A buffer is lent at full size, but a client fills it at its own pace: a slow
client that sent a few hundred KiB pins the whole buffer. So a buffer's
borrower may mark it *reclaimable* (:meth:`PartBuffer.reclaimable`) while it
waits for its client, with a callback that gives the buffer up. When a request
has to wait and a reclaimable buffer has been lent for ``fill_seconds`` or
longer without being filled and sent, the pool calls that callback: the upload
moves the bytes it has into a small private staging area (charged to a
:class:`StagingBudget`, which never waits) and releases the buffer, which goes
to the longest waiter. An upload that fills a buffer within ``fill_seconds``
is never interrupted, and nothing is reclaimed while no one waits; so a
dripping client cannot keep a buffer from the others for longer than
``fill_seconds``, whatever the number of its connections or credentials.

Deadlock freedom rests on one rule the callers follow: a task holds at most one
buffer that it is still filling, and acquires the next one only after handing
that one to a part upload, whose completion does not depend on the pool. The
owner limit keeps it: the buffers an owner waits for are in part uploads, or
being filled by its other tasks, none of which waits for the pool. Reclaiming
keeps it too: the callback runs synchronously, waits for nothing and ends with
the buffer released; the staging budget it charges refuses instead of
waiting.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Hashable

from storage.errors import StorageBusy

#: A queued request: the future its task awaits, and the owner it asks for.
_Waiter = tuple[asyncio.Future[None], Hashable | None]


class PartBuffer:
    """One buffer lent by a :class:`BufferPool`; give it back with :meth:`release`.

    ``data`` is the preallocated ``bytearray`` (always ``buffer_size`` long) and
    ``view`` a ``memoryview`` over it for copying chunks in without temporaries.
    """

    __slots__ = ("_owner", "_pool", "data", "lent_at", "view")

    def __init__(
        self, pool: BufferPool, data: bytearray, owner: Hashable | None = None, lent_at: float = 0.0
    ):
        self._pool: BufferPool | None = pool
        self._owner = owner
        self.data = data
        self.view = memoryview(data)
        #: The event loop's clock when the buffer was lent.
        self.lent_at = lent_at

    @property
    def released(self) -> bool:
        return self._pool is None

    def reclaimable(self, give_up: Callable[[], None] | None) -> None:
        """Let the pool call ``give_up`` to take the buffer back; ``None`` withdraws that.

        The borrower sets it while the buffer waits for bytes from elsewhere
        (a client) and withdraws it before working on the buffer again.
        ``give_up`` runs synchronously from the pool once the buffer has been
        lent for ``fill_seconds`` while a request waits; it must not wait and
        must release the buffer (if it raises, the pool drops the buffer).
        Once called it is withdrawn.
        """
        if self._pool is not None:
            self._pool._set_reclaim(self, give_up)

    def release(self, *, reuse: bool = True) -> None:
        """Return the buffer's share of the budget; idempotent.

        ``reuse=False`` drops the buffer instead of keeping it for the next
        upload: use it when something else (an HTTP transport that failed
        mid-send) may still hold a reference to its memory.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool._reclaimable.pop(self, None)
        pool._give_back(self.data if reuse else None, self._owner)


class BufferPool:
    """At most ``capacity`` part buffers of ``buffer_size`` bytes, lent in FIFO order.

    ``owner_limit`` caps the buffers one owner holds at once (``None``: only
    ``capacity``); ``wait_seconds`` bounds each wait for a buffer (``None``: no
    bound). Requests without an owner are bound by ``capacity`` alone.
    ``fill_seconds`` is how long a reclaimable buffer stays with its borrower
    while requests wait (``None``: reclaim nothing); see the module docstring.
    """

    def __init__(
        self,
        buffer_size: int,
        capacity: int,
        *,
        owner_limit: int | None = None,
        wait_seconds: float | None = None,
        fill_seconds: float | None = None,
        idle_release_seconds: float = 30.0,
    ):
        if buffer_size <= 0:
            raise ValueError("buffer_size must be positive")
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        if owner_limit is not None and owner_limit <= 0:
            raise ValueError("owner_limit must be positive")
        if wait_seconds is not None and wait_seconds <= 0:
            raise ValueError("wait_seconds must be positive")
        if fill_seconds is not None and fill_seconds < 0:
            raise ValueError("fill_seconds must not be negative")
        self.buffer_size = buffer_size
        self.capacity = capacity
        self.owner_limit = capacity if owner_limit is None else min(owner_limit, capacity)
        self.wait_seconds = wait_seconds
        self.fill_seconds = fill_seconds
        self.idle_release_seconds = idle_release_seconds
        self._in_use = 0
        self._held: dict[Hashable, int] = {}
        self._free: list[bytearray] = []
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._idle_since: float | None = None
        self._trim_handle: asyncio.TimerHandle | None = None
        self._reclaimable: dict[PartBuffer, Callable[[], None]] = {}
        self._reclaim_handle: asyncio.TimerHandle | None = None
        self._reclaim_at: float | None = None
        self.reclaimed = 0
        """How many buffers were taken back from their borrowers so far."""

    @property
    def in_use(self) -> int:
        """Buffers currently lent (or promised to a waiter being woken)."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Requests queued for a buffer."""
        return sum(1 for waiter, _ in self._waiters if not waiter.done())

    @property
    def spare(self) -> int:
        """Released buffers kept for reuse."""
        return len(self._free)

    def held_by(self, owner: Hashable) -> int:
        """Buffers currently lent to (or promised to) ``owner``."""
        return self._held.get(owner, 0)

    def can_lend(self, owner: Hashable | None = None) -> bool:
        """Whether :meth:`acquire` for ``owner`` would lend a buffer without waiting."""
        return self._in_use < self.capacity and self._may_take(owner)

    async def acquire(self, owner: Hashable | None = None) -> PartBuffer:
        """Wait for budget in FIFO order and lend a buffer, on behalf of ``owner``.

        Raises :class:`~storage.errors.StorageBusy` when no buffer came free
        within ``wait_seconds``. Cancellation or that timeout while waiting
        leaves the pool as it was (a buffer granted to a waiter that is
        cancelled at the same moment passes to the next).
        """
        # After every release the eligible waiters have been served, so a free
        # slot here means every queued waiter is at its owner's limit: taking
        # it passes no one who could have had it.
        if self.can_lend(owner):
            self._take(owner)
            return self._lend(owner)
        # Buffers left unfilled past fill_seconds go to the queue first (FIFO),
        # then to this request if one is still free.
        self._reclaim_overdue()
        if self.can_lend(owner):
            self._take(owner)
            return self._lend(owner)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (waiter, owner)
        self._waiters.append(entry)
        self._schedule_reclaim()
        try:
            async with asyncio.timeout(self.wait_seconds):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return self._lend(owner)  # granted as the wait ran out: keep it
            self._forget(entry)
            assert self.wait_seconds is not None
            own_share = owner is not None and self.held_by(owner) >= self.owner_limit
            raise StorageBusy(self.wait_seconds, own_share=own_share) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Granted and cancelled in the same step: hand the slot on.
                self._untake(owner)
                self._wake()
            else:
                self._forget(entry)
            raise
        return self._lend(owner)

    def _may_take(self, owner: Hashable | None) -> bool:
        return owner is None or self._held.get(owner, 0) < self.owner_limit

    def _take(self, owner: Hashable | None) -> None:
        self._in_use += 1
        if owner is not None:
            self._held[owner] = self._held.get(owner, 0) + 1

    def _untake(self, owner: Hashable | None) -> None:
        self._in_use -= 1
        if owner is not None:
            left = self._held[owner] - 1
            if left:
                self._held[owner] = left
            else:
                del self._held[owner]

    def _forget(self, entry: _Waiter) -> None:
        entry[0].cancel()
        if entry in self._waiters:  # _wake() may have dropped it already
            self._waiters.remove(entry)

    def _lend(self, owner: Hashable | None) -> PartBuffer:
        self._idle_since = None
        data = self._free.pop() if self._free else bytearray(self.buffer_size)
        return PartBuffer(self, data, owner, asyncio.get_running_loop().time())

    def _set_reclaim(self, buffer: PartBuffer, give_up: Callable[[], None] | None) -> None:
        if give_up is None:
            self._reclaimable.pop(buffer, None)
            return
        self._reclaimable[buffer] = give_up
        if self._waiters:
            self._schedule_reclaim()

    def _reclaim_overdue(self) -> None:
        """Take back every reclaimable buffer lent ``fill_seconds`` ago or earlier."""
        if self.fill_seconds is None or not self._reclaimable:
            return
        cutoff = asyncio.get_running_loop().time() - self.fill_seconds
        for buffer in [b for b in self._reclaimable if b.lent_at <= cutoff]:
            give_up = self._reclaimable.pop(buffer, None)
            if give_up is None or buffer.released:
                continue
            self.reclaimed += 1
            try:
                give_up()
            except Exception:
                buffer.release(reuse=False)  # a broken borrower must not keep it

    def _schedule_reclaim(self) -> None:
        """Arm the timer for the earliest reclaim deadline, if requests wait."""
        if self.fill_seconds is None or not self._reclaimable or not self._waiters:
            return
        due = min(b.lent_at for b in self._reclaimable) + self.fill_seconds
        if self._reclaim_handle is not None:
            assert self._reclaim_at is not None
            if self._reclaim_at <= due:
                return
            self._reclaim_handle.cancel()
        loop = asyncio.get_running_loop()
        self._reclaim_at = due
        self._reclaim_handle = loop.call_at(due, self._on_reclaim_timer)

    def _on_reclaim_timer(self) -> None:
        self._reclaim_handle = self._reclaim_at = None
        if self.waiting:
            self._reclaim_overdue()
        self._schedule_reclaim()

    def _give_back(self, data: bytearray | None, owner: Hashable | None) -> None:
        if data is not None and len(self._free) < self.capacity:
            self._free.append(data)
        self._untake(owner)
        self._wake()
        if self._in_use == 0 and self._free:
            self._schedule_trim()

    def _wake(self) -> None:
        # The slot is reserved for the woken waiter here, at release time, so a
        # newcomer calling acquire() before the waiter runs cannot take it.
        # Waiters whose owner is at its limit keep their place in the queue.
        if not self._waiters or self._in_use >= self.capacity:
            return
        kept: collections.deque[_Waiter] = collections.deque()
        while self._waiters and self._in_use < self.capacity:
            entry = self._waiters.popleft()
            waiter, owner = entry
            if waiter.done():
                continue
            if self._may_take(owner):
                self._take(owner)
                waiter.set_result(None)
            else:
                kept.append(entry)
        kept.extend(self._waiters)
        self._waiters = kept

    def _schedule_trim(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_since = loop.time()
        if self._trim_handle is None:
            self._trim_handle = loop.call_later(self.idle_release_seconds, self._trim)

    def _trim(self) -> None:
        self._trim_handle = None
        if self._in_use or self._idle_since is None:
            return  # busy again; the next time it falls idle schedules a new trim
        remaining = self._idle_since + self.idle_release_seconds - asyncio.get_running_loop().time()
        if remaining > 0:
            self._trim_handle = asyncio.get_running_loop().call_later(remaining, self._trim)
            return
        self._free.clear()

    def close(self) -> None:
        """Drop the spare buffers and stop the idle timer (lent buffers stay valid)."""
        if self._trim_handle is not None:
            self._trim_handle.cancel()
            self._trim_handle = None
        if self._reclaim_handle is not None:
            self._reclaim_handle.cancel()
            self._reclaim_handle = self._reclaim_at = None
        self._free.clear()


class StagingBudget:
    """The bytes that uploads together may keep outside the part buffers.

    An upload whose part buffer was reclaimed keeps the bytes of its current
    part in a private, growing staging area; every byte it stages there is
    charged here first. :meth:`try_take` never waits: when the budget is spent
    the upload is refused (the slow one, not the uploads that fill their
    buffers in time). ``capacity`` may be ``0``: then a reclaimed upload is
    always refused.
    """

    __slots__ = ("_in_use", "capacity", "refused")

    def __init__(self, capacity: int):
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.capacity = capacity
        self._in_use = 0
        #: How many charges were refused so far.
        self.refused = 0

    @property
    def in_use(self) -> int:
        """Bytes currently charged."""
        return self._in_use

    def try_take(self, size: int) -> bool:
        """Charge ``size`` bytes if they fit; ``False`` (and nothing charged) if not."""
        if size < 0:
            raise ValueError("size must not be negative")
        if self._in_use + size > self.capacity:
            self.refused += 1
            return False
        self._in_use += size
        return True

    def give_back(self, size: int) -> None:
        """Return ``size`` bytes charged earlier."""
        if not 0 <= size <= self._in_use:
            raise ValueError("giving back more than was charged")
        self._in_use -= size
