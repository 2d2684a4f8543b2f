"""A process-wide budget of reusable part buffers.

A streaming upload copies the incoming chunks into a preallocated part buffer
and hands the full buffer to a part upload. Without a shared budget, every
concurrent upload could hold ``part_concurrency + 1`` buffers (64 uploads x
5 x 8 MiB = 2.5 GiB); with it, an upload that needs a new buffer waits until one
is free, which stops it from reading its client socket and so back-pressures the
client.

The pool hands out at most ``capacity`` buffers of ``buffer_size`` bytes at a
time, in strict FIFO order of the requests (a released buffer goes to the
longest waiter, so small and large uploads cannot starve each other). Released
buffers are kept and reused: allocating and freeing multi-megabyte buffers per
part makes glibc ``malloc`` map and unmap (and page-fault) them every time.
When the pool has been completely idle for ``idle_release_seconds`` it drops
its spare buffers so an idle process does not keep the peak in memory.

Deadlock freedom rests on one rule the callers follow: a task holds at most one
buffer that it is still filling, and acquires the next one only after handing
that one to a part upload, whose completion does not depend on the pool.
"""

from __future__ import annotations

import asyncio
import collections


class PartBuffer:
    """One buffer lent by a :class:`BufferPool`; give it back with :meth:`release`.

    ``data`` is the preallocated ``bytearray`` (always ``buffer_size`` long) and
    ``view`` a ``memoryview`` over it for copying chunks in without temporaries.
    """

    __slots__ = ("_pool", "data", "view")

    def __init__(self, pool: BufferPool, data: bytearray):
        self._pool: BufferPool | None = pool
        self.data = data
        self.view = memoryview(data)

    @property
    def released(self) -> bool:
        return self._pool is None

    def release(self, *, reuse: bool = True) -> None:
        """Return the buffer's share of the budget; idempotent.

        ``reuse=False`` drops the buffer instead of keeping it for the next
        upload: use it when something else (an HTTP transport that failed
        mid-send) may still hold a reference to its memory.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool._give_back(self.data if reuse else None)


class BufferPool:
    """At most ``capacity`` part buffers of ``buffer_size`` bytes, lent in FIFO order."""

    def __init__(self, buffer_size: int, capacity: int, *, idle_release_seconds: float = 30.0):
        if buffer_size <= 0:
            raise ValueError("buffer_size must be positive")
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.buffer_size = buffer_size
        self.capacity = capacity
        self.idle_release_seconds = idle_release_seconds
        self._in_use = 0
        self._free: list[bytearray] = []
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle_since: float | None = None
        self._trim_handle: asyncio.TimerHandle | None = None

    @property
    def in_use(self) -> int:
        """Buffers currently lent (or promised to a waiter being woken)."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Requests queued for a buffer."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    @property
    def spare(self) -> int:
        """Released buffers kept for reuse."""
        return len(self._free)

    async def acquire(self) -> PartBuffer:
        """Wait for budget in FIFO order and lend a buffer.

        Cancellation while waiting leaves the pool as it was (a buffer granted
        to a waiter that is cancelled at the same moment passes to the next).
        """
        if self._in_use < self.capacity and not self._waiters:
            self._in_use += 1
            return self._lend()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Granted and cancelled in the same step: hand the slot on.
                self._in_use -= 1
                self._wake()
            else:
                waiter.cancel()
                if waiter in self._waiters:  # _wake() may have dropped it already
                    self._waiters.remove(waiter)
            raise
        return self._lend()

    def _lend(self) -> PartBuffer:
        self._idle_since = None
        data = self._free.pop() if self._free else bytearray(self.buffer_size)
        return PartBuffer(self, data)

    def _give_back(self, data: bytearray | None) -> None:
        if data is not None and len(self._free) < self.capacity:
            self._free.append(data)
        self._in_use -= 1
        self._wake()
        if self._in_use == 0 and self._free:
            self._schedule_trim()

    def _wake(self) -> None:
        # The slot is reserved for the woken waiter here, at release time, so a
        # newcomer calling acquire() before the waiter runs cannot take it.
        while self._waiters and self._in_use < self.capacity:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)

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
        self._free.clear()
