"""A short-lived cache of verified lease tokens and their active claims.

Every publish with a lease token needs the token's signature checked and its
claim looked up. A fleet worker publishes many files under one lease, so the
gateway keeps, per exact token string, the active claim it found, and skips
both steps while the entry is fresh. It is safe because:

- **The commit re-checks the claim** in the same transaction that records the
  artifact (``FOR SHARE``), so a stale entry can at worst let an upload start
  that its commit then refuses: it never publishes anything.
- **Releases and supersessions are announced.** The statements that end a
  claim ``NOTIFY`` :data:`CLAIMS_CHANNEL` with its lease id; every replica's
  listener connection evicts the entry at once. While that connection is down
  the cache is disabled and empty (notifications sent meanwhile are lost), so
  every lookup goes to Postgres.
- **Entries expire on their own**: after ``max_age`` seconds, when the claim's
  ``expires_at`` passes (measured from the database clock's answer), or when
  the token's ``exp`` passes, whichever is first.
- **No lookup can re-insert what an eviction removed**: :meth:`ClaimCache.put`
  drops an entry if any eviction happened since its lookup began
  (:attr:`ClaimCache.version`).

Only active claims are cached; a refused token or claim is looked up again
every time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from leases.claims import CLAIMS_CHANNEL, Claim

__all__ = ["CLAIMS_CHANNEL", "ClaimCache"]


@dataclass(frozen=True, slots=True)
class _Entry:
    claim: Claim
    deadline: float  # on the cache's clock


class ClaimCache:
    """Token string → active :class:`~leases.claims.Claim`, for at most ``max_age`` seconds.

    ``max_age`` of 0 turns the cache off. It starts disabled: whoever delivers
    the invalidations enables it (:meth:`set_enabled`) once they can.
    """

    def __init__(
        self,
        *,
        max_age: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age < 0 or max_entries < 1:
            raise ValueError("max_age must be >= 0 and max_entries >= 1")
        self.max_age = max_age
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._tokens_of: dict[str, set[str]] = {}
        self._enabled = False
        self.version = 0
        """Bumped by every eviction; :meth:`put` compares it with the lookup's start."""

    @property
    def enabled(self) -> bool:
        return self._enabled and self.max_age > 0

    def __len__(self) -> int:
        return len(self._entries)

    def set_enabled(self, enabled: bool) -> None:
        """Turn the cache on or off; either way it starts empty."""
        self.clear()
        self._enabled = enabled

    def get(self, token: str) -> Claim | None:
        """The cached active claim of ``token``, if still fresh."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if self._clock() >= entry.deadline:
            self._remove(token, entry)
            return None
        return entry.claim

    def put(self, token: str, claim: Claim, *, valid_for: float, since: int) -> None:
        """Keep ``claim`` for ``token`` for at most ``valid_for`` seconds.

        ``since`` is :attr:`version` read before the claim was looked up; if
        anything was evicted since, the claim may already be stale and is not kept.
        """
        if not self.enabled or since != self.version or not claim.live:
            return
        valid_for = min(valid_for, self.max_age)
        if valid_for <= 0:
            return
        if token not in self._entries and len(self._entries) >= self.max_entries:
            oldest = next(iter(self._entries))
            self._remove(oldest, self._entries[oldest])
        self._entries[token] = _Entry(claim, self._clock() + valid_for)
        self._tokens_of.setdefault(claim.lease_id, set()).add(token)

    def evict(self, lease_id: str) -> None:
        """Forget every token of ``lease_id`` (its claim was released or superseded)."""
        self.version += 1
        for token in self._tokens_of.pop(lease_id, ()):
            self._entries.pop(token, None)

    def clear(self) -> None:
        self.version += 1
        self._entries.clear()
        self._tokens_of.clear()

    def _remove(self, token: str, entry: _Entry) -> None:
        del self._entries[token]
        tokens = self._tokens_of.get(entry.claim.lease_id)
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self._tokens_of[entry.claim.lease_id]
