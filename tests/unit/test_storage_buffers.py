"""The shared part-buffer budget: limits, FIFO order, cancellation, reuse, no deadlock,
bounded waits, the per-owner share, taking unfilled buffers back, and the staging budget."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable

import pytest

from storage.buffers import BufferPool, PartBuffer, StagingBudget
from storage.errors import StorageBusy


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_lends_up_to_capacity_then_waits() -> None:
    pool = BufferPool(16, 2)
    first = await pool.acquire()
    second = await pool.acquire()
    assert pool.in_use == 2
    assert len(first.data) == 16 and first.view.nbytes == 16
    third = asyncio.create_task(pool.acquire())
    await _settle()
    assert not third.done() and pool.waiting == 1
    first.release()
    lent = await asyncio.wait_for(third, 1)
    assert pool.in_use == 2 and pool.waiting == 0
    second.release()
    lent.release()
    assert pool.in_use == 0


async def test_waiters_are_served_in_fifo_order_without_barging() -> None:
    pool = BufferPool(8, 1)
    held = await pool.acquire()
    served: list[int] = []

    async def wait_turn(n: int) -> None:
        buffer = await pool.acquire()
        served.append(n)
        await asyncio.sleep(0)
        buffer.release()

    tasks = []
    for n in range(5):
        tasks.append(asyncio.create_task(wait_turn(n)))
        await _settle()
    held.release()
    # A newcomer arriving right after the release must queue behind the waiters.
    late = asyncio.create_task(wait_turn(99))
    await asyncio.wait_for(asyncio.gather(*tasks, late), 2)
    assert served == [0, 1, 2, 3, 4, 99]


async def test_cancelled_waiter_leaves_the_queue() -> None:
    pool = BufferPool(8, 1)
    held = await pool.acquire()
    doomed = asyncio.create_task(pool.acquire())
    patient = asyncio.create_task(pool.acquire())
    await _settle()
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    held.release()
    buffer = await asyncio.wait_for(patient, 1)
    assert pool.in_use == 1 and pool.waiting == 0
    buffer.release()
    assert pool.in_use == 0


async def test_waiter_cancelled_as_it_is_granted_passes_the_buffer_on() -> None:
    pool = BufferPool(8, 1)
    held = await pool.acquire()
    granted = asyncio.create_task(pool.acquire())
    after = asyncio.create_task(pool.acquire())
    await _settle()
    held.release()  # grants `granted` ...
    granted.cancel()  # ... which is cancelled before it can run
    with pytest.raises(asyncio.CancelledError):
        await granted
    buffer = await asyncio.wait_for(after, 1)
    assert pool.in_use == 1
    buffer.release()
    assert pool.in_use == 0


async def test_released_buffers_are_reused_unless_told_not_to() -> None:
    pool = BufferPool(32, 2)
    first = await pool.acquire()
    data = first.data
    first.release()
    first.release()  # idempotent
    assert pool.in_use == 0 and pool.spare == 1
    again = await pool.acquire()
    assert again.data is data
    again.release(reuse=False)
    assert pool.spare == 0
    fresh = await pool.acquire()
    assert fresh.data is not data
    fresh.release()
    pool.close()


async def test_idle_pool_drops_its_spare_buffers() -> None:
    pool = BufferPool(32, 3, idle_release_seconds=0.05)
    buffers = [await pool.acquire() for _ in range(3)]
    for buffer in buffers:
        buffer.release()
    assert pool.spare == 3
    await asyncio.sleep(0.2)
    assert pool.spare == 0


async def test_busy_pool_keeps_its_spare_buffers() -> None:
    pool = BufferPool(32, 2, idle_release_seconds=0.05)
    (await pool.acquire()).release()
    busy = await pool.acquire()
    await asyncio.sleep(0.15)
    assert busy.data is not None and pool.in_use == 1
    busy.release()
    assert pool.spare == 1
    pool.close()


def test_rejects_empty_budget() -> None:
    with pytest.raises(ValueError):
        BufferPool(0, 1)
    with pytest.raises(ValueError):
        BufferPool(1, 0)
    with pytest.raises(ValueError):
        BufferPool(1, 1, owner_limit=0)
    with pytest.raises(ValueError):
        BufferPool(1, 1, wait_seconds=0)


async def test_a_wait_that_runs_out_raises_busy_and_leaves_the_pool_as_it_was() -> None:
    pool = BufferPool(8, 1, wait_seconds=0.05)
    held = await pool.acquire()
    with pytest.raises(StorageBusy) as info:
        await pool.acquire()
    assert info.value.waited == 0.05 and not info.value.own_share
    assert pool.in_use == 1 and pool.waiting == 0
    held.release()
    again = await pool.acquire()
    assert pool.in_use == 1
    again.release()
    assert pool.in_use == 0


async def test_one_owner_holds_at_most_its_share_and_others_pass_its_waiters() -> None:
    pool = BufferPool(8, 4, owner_limit=2)
    a1, a2 = await pool.acquire("a"), await pool.acquire("a")
    a3 = asyncio.create_task(pool.acquire("a"))
    await _settle()
    assert not a3.done() and pool.held_by("a") == 2
    # Buffers are free: another owner (or no owner) is not queued behind "a".
    b1 = await asyncio.wait_for(pool.acquire("b"), 1)
    anyone = await asyncio.wait_for(pool.acquire(), 1)
    assert pool.in_use == 4 and pool.held_by("b") == 1
    a1.release()
    lent = await asyncio.wait_for(a3, 1)
    assert pool.held_by("a") == 2 and pool.in_use == 4
    for buffer in (a2, lent, b1, anyone):
        buffer.release()
    assert pool.in_use == 0 and pool.held_by("a") == 0 and pool.waiting == 0


async def test_a_capped_owner_keeps_its_place_and_its_own_order() -> None:
    pool = BufferPool(8, 3, owner_limit=2)
    a1, a2, b1 = await pool.acquire("a"), await pool.acquire("a"), await pool.acquire("b")
    served: list[str] = []

    async def wait_turn(owner: str, name: str) -> PartBuffer:
        buffer = await pool.acquire(owner)
        served.append(name)
        return buffer

    a3 = asyncio.create_task(wait_turn("a", "a3"))
    await _settle()
    a4 = asyncio.create_task(wait_turn("a", "a4"))
    await _settle()
    b2 = asyncio.create_task(wait_turn("b", "b2"))
    await _settle()
    assert pool.waiting == 3
    b1.release()  # "a" is at its share: the buffer goes to the first waiter that may take it
    await asyncio.wait_for(b2, 1)
    assert served == ["b2"]
    a1.release()
    await asyncio.wait_for(a3, 1)
    a2.release()
    await asyncio.wait_for(a4, 1)
    assert served == ["b2", "a3", "a4"]
    for task in (a3, a4, b2):
        task.result().release()
    assert pool.in_use == 0 and pool.waiting == 0


async def test_one_owners_waiters_are_served_in_their_order() -> None:
    pool = BufferPool(8, 4, owner_limit=1)
    a1 = await pool.acquire("a")
    first = asyncio.create_task(pool.acquire("a"))
    await _settle()
    second = asyncio.create_task(pool.acquire("a"))
    await _settle()
    a1.release()
    lent = await asyncio.wait_for(first, 1)
    await _settle()
    assert not second.done()
    lent.release()
    (await asyncio.wait_for(second, 1)).release()
    assert pool.in_use == 0


async def test_waiting_for_the_own_share_is_reported_as_such() -> None:
    pool = BufferPool(8, 4, owner_limit=1, wait_seconds=0.05)
    held = await pool.acquire("a")
    with pytest.raises(StorageBusy) as info:
        await pool.acquire("a")
    assert info.value.own_share
    other = await pool.acquire("b")
    assert pool.in_use == 2 and pool.waiting == 0
    held.release()
    other.release()
    assert pool.in_use == 0 and pool.held_by("a") == 0


async def test_cancelled_capped_waiter_leaves_the_queue() -> None:
    pool = BufferPool(8, 2, owner_limit=1)
    held = await pool.acquire("a")
    doomed = asyncio.create_task(pool.acquire("a"))
    await _settle()
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert pool.waiting == 0 and pool.held_by("a") == 1
    held.release()
    assert pool.in_use == 0 and pool.held_by("a") == 0


async def test_many_uploads_sharing_a_small_budget_all_finish() -> None:
    """Uploads that follow the one-filling-buffer rule cannot deadlock on the budget.

    Each simulated upload fills a buffer, hands it to a part task (at most two
    in flight per upload) and only then asks for the next one, like
    ``storage.s3.S3Upload`` does. With 12 uploads sharing 3 buffers all must finish and
    the budget must never be exceeded.
    """
    rng = random.Random(7)
    pool = BufferPool(64, 3)
    peak = 0

    async def part(buffer: PartBuffer, slots: asyncio.Semaphore) -> None:
        try:
            await asyncio.sleep(rng.random() / 500)
        finally:
            buffer.release()
            slots.release()

    async def upload(parts: int) -> None:
        nonlocal peak
        slots = asyncio.Semaphore(2)
        tasks = []
        for _ in range(parts):
            buffer = await pool.acquire()
            peak = max(peak, pool.in_use)
            await asyncio.sleep(rng.random() / 1000)  # the client sends the part's bytes
            buffer.view[:4] = b"data"
            await slots.acquire()
            tasks.append(asyncio.create_task(part(buffer, slots)))
        await asyncio.gather(*tasks)

    await asyncio.wait_for(asyncio.gather(*(upload(rng.randint(1, 8)) for _ in range(12))), 10)
    assert peak <= 3
    assert pool.in_use == 0 and pool.waiting == 0
    pool.close()


async def test_owners_sharing_a_small_budget_all_finish_within_their_share() -> None:
    """The one-filling-buffer rule still rules out deadlock when owners are capped.

    Twelve uploads of three owners share 4 buffers, each owner at most 2 at once;
    all must finish, and no owner may ever hold more than its share.
    """
    rng = random.Random(11)
    pool = BufferPool(64, 4, owner_limit=2)
    peak: dict[str, int] = {}

    async def part(buffer: PartBuffer, slots: asyncio.Semaphore) -> None:
        try:
            await asyncio.sleep(rng.random() / 500)
        finally:
            buffer.release()
            slots.release()

    async def upload(owner: str, parts: int) -> None:
        slots = asyncio.Semaphore(2)
        tasks = []
        for _ in range(parts):
            buffer = await pool.acquire(owner)
            peak[owner] = max(peak.get(owner, 0), pool.held_by(owner))
            await asyncio.sleep(rng.random() / 1000)
            await slots.acquire()
            tasks.append(asyncio.create_task(part(buffer, slots)))
        await asyncio.gather(*tasks)

    uploads = [upload("abc"[n % 3], rng.randint(1, 8)) for n in range(12)]
    await asyncio.wait_for(asyncio.gather(*uploads), 10)
    assert set(peak) == {"a", "b", "c"} and max(peak.values()) <= 2
    assert pool.in_use == 0 and pool.waiting == 0
    pool.close()


def _giving_up(buffer: PartBuffer, log: list[PartBuffer]) -> Callable[[], None]:
    """A borrower's give-up callback: note the buffer and release it."""

    def give_up() -> None:
        log.append(buffer)
        buffer.release()

    return give_up


async def test_an_unfilled_buffer_is_taken_back_only_when_someone_waits() -> None:
    pool = BufferPool(8, 1, fill_seconds=0.0)
    given_up: list[PartBuffer] = []
    slow = await pool.acquire("a")
    slow.reclaimable(_giving_up(slow, given_up))
    await asyncio.sleep(0.02)  # overdue, but nobody waits: it stays lent
    assert given_up == [] and pool.reclaimed == 0 and not slow.released
    fast = await asyncio.wait_for(pool.acquire("b"), 1)  # overdue: taken back at once
    assert given_up == [slow] and slow.released and pool.reclaimed == 1
    assert pool.held_by("a") == 0 and pool.held_by("b") == 1
    fast.release()
    assert pool.in_use == 0


async def test_a_buffer_is_taken_back_once_it_is_overdue_while_a_request_waits() -> None:
    pool = BufferPool(8, 1, fill_seconds=0.05)
    given_up: list[PartBuffer] = []
    slow = await pool.acquire()
    slow.reclaimable(_giving_up(slow, given_up))
    waiter = asyncio.create_task(pool.acquire())
    await _settle()
    assert not waiter.done() and given_up == []  # not overdue yet
    lent = await asyncio.wait_for(waiter, 2)  # the pool's timer takes it back
    assert given_up == [slow] and pool.reclaimed == 1
    lent.release()
    pool.close()


async def test_a_buffer_its_borrower_works_on_or_released_is_not_taken_back() -> None:
    pool = BufferPool(8, 2, fill_seconds=0.0, wait_seconds=0.05)
    given_up: list[PartBuffer] = []
    busy, done = await pool.acquire(), await pool.acquire()
    busy.reclaimable(_giving_up(busy, given_up))
    busy.reclaimable(None)  # the borrower works on it again
    done.reclaimable(_giving_up(done, given_up))
    done.release()
    third = await pool.acquire()  # the released one, not by taking one back
    with pytest.raises(StorageBusy):
        await pool.acquire()
    assert given_up == [] and pool.reclaimed == 0 and not busy.released
    busy.release()
    third.release()
    assert pool.in_use == 0


async def test_a_buffer_taken_back_goes_to_the_longest_waiter() -> None:
    pool = BufferPool(8, 1, fill_seconds=0.0)
    given_up: list[PartBuffer] = []
    held = await pool.acquire()
    first = asyncio.create_task(pool.acquire())  # queued while nothing is reclaimable
    await _settle()
    held.reclaimable(_giving_up(held, given_up))
    second = asyncio.create_task(pool.acquire())  # takes it back, for `first`
    await _settle()
    assert given_up == [held] and first.done() and not second.done()
    first.result().release()
    (await asyncio.wait_for(second, 1)).release()
    assert pool.in_use == 0 and pool.waiting == 0


async def test_a_borrower_that_fails_to_give_up_loses_the_buffer() -> None:
    pool = BufferPool(8, 1, fill_seconds=0.0)
    held = await pool.acquire()
    data = held.data

    def broken() -> None:
        raise RuntimeError("bug")

    held.reclaimable(broken)
    fresh = await asyncio.wait_for(pool.acquire(), 1)
    assert held.released and fresh.data is not data  # dropped, not reused
    fresh.release()
    assert pool.in_use == 0


def test_rejects_a_negative_fill_time() -> None:
    with pytest.raises(ValueError):
        BufferPool(1, 1, fill_seconds=-1)


def test_the_staging_budget_refuses_instead_of_waiting() -> None:
    budget = StagingBudget(10)
    assert budget.try_take(6) and budget.in_use == 6
    assert not budget.try_take(5)  # nothing charged by a refusal
    assert budget.in_use == 6 and budget.refused == 1
    assert budget.try_take(4) and budget.in_use == 10
    budget.give_back(10)
    assert budget.in_use == 0
    with pytest.raises(ValueError):
        budget.give_back(1)
    with pytest.raises(ValueError):
        budget.try_take(-1)
    with pytest.raises(ValueError):
        StagingBudget(-1)
    empty = StagingBudget(0)
    assert empty.try_take(0) and not empty.try_take(1)


async def test_uploads_sharing_a_small_budget_with_slow_clients_all_finish() -> None:
    """Taking buffers back keeps the one-filling-buffer rule deadlock-free.

    Twelve simulated uploads of three owners share 3 buffers; their clients pause
    now and then while the buffer they fill is reclaimable; a reclaimed upload keeps
    its bytes in a charged staging area and sends its part from there. All must
    finish, within the budget, and the staging budget must end empty.
    """
    rng = random.Random(5)
    pool = BufferPool(64, 3, owner_limit=2, fill_seconds=0.001)
    staging = StagingBudget(64 * 36)

    async def part(release: Callable[[], None], slots: asyncio.Semaphore) -> None:
        try:
            await asyncio.sleep(rng.random() / 500)
        finally:
            release()
            slots.release()

    async def upload(owner: str, parts: int) -> None:
        slots = asyncio.Semaphore(2)
        tasks = []
        for _ in range(parts):
            state: dict[str, PartBuffer | None] = {"buffer": await pool.acquire(owner)}

            def give_up(state: dict[str, PartBuffer | None] = state) -> None:
                buffer, state["buffer"] = state["buffer"], None
                assert buffer is not None
                assert staging.try_take(64)  # 12 uploads x 3 parts at most: it fits
                buffer.release()

            held = state["buffer"]
            assert held is not None
            held.reclaimable(give_up)
            await asyncio.sleep(rng.random() / 200)  # the client pauses mid-part
            held.reclaimable(None)  # (a no-op once it was taken back)
            assert pool.in_use <= 3
            await slots.acquire()
            if state["buffer"] is None:  # taken back: the part goes from staging
                release: Callable[[], None] = functools.partial(staging.give_back, 64)
            else:
                release = held.release
            tasks.append(asyncio.create_task(part(release, slots)))
        await asyncio.gather(*tasks)

    uploads = [upload("abc"[n % 3], rng.randint(1, 6)) for n in range(12)]
    await asyncio.wait_for(asyncio.gather(*uploads), 10)
    assert pool.reclaimed > 0
    assert pool.in_use == 0 and pool.waiting == 0 and staging.in_use == 0
    pool.close()
