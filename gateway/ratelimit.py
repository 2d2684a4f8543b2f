"""Per-key token buckets, in process: how often one principal may do a costly thing.

Used for signed-URL mints (each one writes an audit row). The buckets live in
the replica's memory, so a limit holds per replica: N replicas behind a load
balancer let a principal do up to N times as much.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 10_000
"""Buckets kept at most; the least recently used one beyond is forgotten (a
forgotten key starts again with a full bucket, which only ever errs on allowing)."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """``per_minute`` actions per key on average, at most ``burst`` at once.

    ``per_minute == 0`` means no limit. :meth:`take` spends one token of ``key``'s
    bucket and answers 0.0, or spends nothing and answers the seconds until a
    token is there.
    """

    def __init__(
        self,
        *,
        per_minute: int,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if per_minute < 0 or burst < 1:
            raise ValueError("per_minute must be >= 0 and burst >= 1")
        self.per_minute = per_minute
        self.burst = burst
        self._rate = per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def limited(self) -> bool:
        return self.per_minute > 0

    def take(self, key: str) -> float:
        if not self.limited:
            return 0.0
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self._rate)
            bucket.updated = now
        self._buckets[key] = bucket  # most recently used last
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def __len__(self) -> int:
        return len(self._buckets)
