"""How slowly a request body may arrive: an idle timeout and a minimum rate.

The idle timeout alone only sees silence: a client that sends a few bytes every
so often keeps its request, and the part buffer its upload holds, for ever.
:class:`BodyPace` also requires a minimum average rate (like Apache
mod_reqtimeout's ``MinRate``): the time the server spends waiting for body
bytes is cut into consecutive windows of ``window_seconds``, and a window in
which fewer than ``min_rate * window`` bytes arrived ends the request with
:class:`~gateway.errors.BodyTooSlow`.

Only the time spent waiting for the client counts: while the server itself is
busy (waiting for a part buffer or for its object store) the client's bytes
queue up in socket buffers, and the wait is not the client's fault. A body that
first sends a burst and then trickles is cut off within about two windows,
plus at most one idle timeout for the read that ends the window.

The rate floor bounds how long a body may take, not the memory it pins while
it trickles in above the floor: that is the object store's
(:mod:`storage.buffers`): a part buffer not filled within
``GATEWAY_S3_BUFFER_FILL_SECONDS`` while other uploads wait is taken back and
the slow upload keeps only the bytes it sent, within
``GATEWAY_S3_STAGING_BUDGET_BYTES`` for all such uploads together (beyond that
it also ends with :class:`~gateway.errors.BodyTooSlow`).

The reader calls :meth:`BodyPace.started` before each read and
:meth:`BodyPace.arrived` after it: two monotonic clock reads and a few float
operations per chunk, no timers.
"""

from __future__ import annotations

import time

from gateway.errors import BodyTooSlow


class BodyPace:
    """The pace rules of one request body, and where its current window stands.

    ``min_rate`` is in bytes per second; ``0`` turns the rate check off.
    """

    __slots__ = ("_bytes", "_waited", "idle_timeout", "min_rate", "window_seconds")

    def __init__(self, *, idle_timeout: float, min_rate: float, window_seconds: float) -> None:
        if idle_timeout <= 0 or window_seconds <= 0 or min_rate < 0:
            raise ValueError("idle_timeout and window_seconds must be positive, min_rate >= 0")
        self.idle_timeout = idle_timeout
        self.min_rate = min_rate
        self.window_seconds = window_seconds
        self._waited = 0.0
        self._bytes = 0

    @staticmethod
    def started() -> float:
        """The clock reading to pass to :meth:`arrived` once the read returns."""
        return time.monotonic()

    def arrived(self, size: int, started: float) -> None:
        """Count ``size`` bytes that took the read begun at ``started``; raise if too slow."""
        self._waited += time.monotonic() - started
        self._bytes += size
        if self._waited < self.window_seconds:
            return
        waited, received = self._waited, self._bytes
        self._waited, self._bytes = 0.0, 0
        if received < self.min_rate * waited:
            raise BodyTooSlow(
                f"the body arrived at {received / waited:.0f} bytes per second over "
                f"{waited:.1f} seconds; at least {self.min_rate:g} are required",
                headers={"Connection": "close"},
            )
