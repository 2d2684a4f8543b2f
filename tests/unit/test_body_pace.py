"""The minimum body rate: drips are cut off, slow but real networks and server stalls are not.

Each read is reported with the clock reading of its start, so a test states how
long the client kept the server waiting without sleeping.
"""

from __future__ import annotations

import time

import pytest

from gateway.api.problems import problem_for
from gateway.bodypace import BodyPace
from gateway.errors import BodyTooSlow

KiB = 1024


def pace(min_rate: float = 1024, window: float = 30.0) -> BodyPace:
    return BodyPace(idle_timeout=60.0, min_rate=min_rate, window_seconds=window)


def read(p: BodyPace, size: int, waited: float) -> None:
    """One read that returned ``size`` bytes after the client kept it waiting ``waited`` s."""
    p.arrived(size, time.monotonic() - waited)


def test_a_fast_body_passes() -> None:
    p = pace()
    for _ in range(1000):
        read(p, 256 * KiB, 0.001)


def test_a_slow_real_network_passes() -> None:
    p = pace()  # 2 KiB/s: a poor mobile link, twice the minimum
    for _ in range(100):
        read(p, 2 * KiB, 1.0)


def test_a_drip_is_cut_off_once_a_window_has_passed() -> None:
    p = pace()
    read(p, 64, 20.0)  # 20 s into the first window: not judged yet
    with pytest.raises(BodyTooSlow) as info:
        read(p, 64, 20.0)
    problem = problem_for(info.value)
    assert problem is not None
    assert (problem.status, problem.code) == (408, "body_too_slow")
    assert problem.headers["Connection"] == "close"


def test_a_burst_pays_for_one_window_only() -> None:
    p = pace()
    read(p, 300 * KiB, 0.01)
    read(p, 64, 20.0)
    read(p, 64, 20.0)  # the first window averaged well above the minimum
    read(p, 64, 20.0)
    with pytest.raises(BodyTooSlow):
        read(p, 64, 20.0)


def test_time_the_server_spends_elsewhere_does_not_count() -> None:
    p = pace(min_rate=5000, window=0.1)
    for _ in range(15):
        read(p, 100, 0.01)  # 10 000 B/s while the server waits for the client ...
        time.sleep(0.05)  # ... which then waits for the server (its storage, a buffer)


def test_headers_count_time_but_no_bytes() -> None:
    p = pace()
    read(p, 0, 29.0)
    with pytest.raises(BodyTooSlow):
        read(p, 0, 2.0)


def test_a_zero_rate_turns_the_check_off() -> None:
    p = pace(min_rate=0)
    for _ in range(10):
        read(p, 1, 59.0)


def test_rejects_unusable_values() -> None:
    with pytest.raises(ValueError):
        BodyPace(idle_timeout=0, min_rate=1, window_seconds=1)
    with pytest.raises(ValueError):
        BodyPace(idle_timeout=1, min_rate=1, window_seconds=0)
    with pytest.raises(ValueError):
        BodyPace(idle_timeout=1, min_rate=-1, window_seconds=1)
