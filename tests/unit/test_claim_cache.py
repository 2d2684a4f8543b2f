"""ClaimCache: what it keeps, for how long, and what makes it forget."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leases import ClaimCache, Lineage
from leases.claims import Claim


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def claim(lease_id: str = "lse_1", *, live: bool = True) -> Claim:
    now = datetime.now(UTC)
    return Claim(
        lease_id=lease_id,
        project="p",
        lineage=Lineage(run_id="r", step_id="s", job_id="j", attempt=1, worker_session_id="w"),
        state="active",
        created_by="svc:s",
        created_at=now,
        expires_at=now,
        max_expires_at=now,
        ended_at=None,
        superseded_by=None,
        live=live,
        seconds_left=60.0,
    )


def enabled_cache(clock: Clock, *, max_age: float = 30.0, max_entries: int = 100) -> ClaimCache:
    cache = ClaimCache(max_age=max_age, max_entries=max_entries, clock=clock)
    cache.set_enabled(True)
    return cache


def test_a_fresh_entry_is_served_until_its_deadline() -> None:
    clock = Clock()
    cache = enabled_cache(clock)
    cache.put("tok", claim(), valid_for=10, since=cache.version)
    cached = cache.get("tok")
    assert cached is not None and cached.lease_id == "lse_1"
    clock.now += 9.9
    assert cache.get("tok") is not None
    clock.now += 0.1
    assert cache.get("tok") is None
    assert len(cache) == 0


def test_max_age_caps_the_validity() -> None:
    clock = Clock()
    cache = enabled_cache(clock, max_age=5)
    cache.put("tok", claim(), valid_for=3600, since=cache.version)
    clock.now += 5
    assert cache.get("tok") is None


def test_nothing_is_kept_while_disabled_or_with_max_age_zero() -> None:
    clock = Clock()
    cache = ClaimCache(max_age=30, clock=clock)
    assert not cache.enabled
    cache.put("tok", claim(), valid_for=10, since=cache.version)
    assert cache.get("tok") is None
    off = enabled_cache(clock, max_age=0)
    assert not off.enabled
    off.put("tok", claim(), valid_for=10, since=off.version)
    assert off.get("tok") is None


def test_disabling_empties_the_cache() -> None:
    cache = enabled_cache(Clock())
    cache.put("tok", claim(), valid_for=10, since=cache.version)
    cache.set_enabled(False)
    cache.set_enabled(True)
    assert cache.get("tok") is None


def test_inactive_claims_and_spent_validity_are_not_kept() -> None:
    cache = enabled_cache(Clock())
    cache.put("a", claim(live=False), valid_for=10, since=cache.version)
    cache.put("b", claim(), valid_for=0, since=cache.version)
    cache.put("c", claim(), valid_for=-5, since=cache.version)
    assert len(cache) == 0


def test_evict_forgets_every_token_of_the_lease() -> None:
    cache = enabled_cache(Clock())
    for token in ("t1", "t2"):
        cache.put(token, claim("lse_1"), valid_for=10, since=cache.version)
    cache.put("other", claim("lse_2"), valid_for=10, since=cache.version)
    cache.evict("lse_1")
    assert cache.get("t1") is None and cache.get("t2") is None
    assert cache.get("other") is not None


def test_a_lookup_that_raced_an_eviction_is_not_kept() -> None:
    cache = enabled_cache(Clock())
    since = cache.version  # the lookup starts ...
    cache.evict("lse_1")  # ... the claim is released meanwhile ...
    cache.put("tok", claim("lse_1"), valid_for=10, since=since)  # ... and its answer arrives
    assert cache.get("tok") is None


def test_the_oldest_entry_makes_room() -> None:
    cache = enabled_cache(Clock(), max_entries=2)
    for token in ("a", "b", "c"):
        cache.put(token, claim(f"lse_{token}"), valid_for=10, since=cache.version)
    assert cache.get("a") is None
    assert cache.get("b") is not None and cache.get("c") is not None
    assert len(cache) == 2
    cache.evict("lse_a")  # its index entry went with it
    assert len(cache) == 2


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        ClaimCache(max_age=-1)
    with pytest.raises(ValueError):
        ClaimCache(max_age=1, max_entries=0)
