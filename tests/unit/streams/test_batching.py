"""Batches formed while the previous one is processed: order, exactly-once hand-out, bounded buffer, late acks."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.streams.batching import EventBatcher, process_batches

# generous bound so that a deadlock fails the test instead of hanging it
TIMEOUT_S = 10.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT_S))


async def spin(times: int = 5) -> None:
    """Let every ready task run ``times`` rounds without any timer."""
    for _ in range(times):
        await asyncio.sleep(0)


class RecordingAcker:
    """Records acknowledged events into a shared log; ``done`` is set once ``expected`` events are acked."""

    def __init__(self, log: list[tuple], expected: int, yields: list[int] | None = None) -> None:
        self.log = log
        self.acked: list[object] = []
        self.expected = expected
        self.done = asyncio.Event()
        self._yields = itertools.cycle(yields or [0])
        if expected == 0:
            self.done.set()

    async def ack(self, event: object) -> bool:
        for _ in range(next(self._yields)):
            await asyncio.sleep(0)
        self.log.append(("ack", event))
        self.acked.append(event)
        if len(self.acked) >= self.expected:
            self.done.set()
        return True


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- property: everything put comes out once, in order, in bounded batches, acked after its handler -----------------


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(0, 2000),
    max_batch=st.integers(1, 600),
    max_buffered=st.none() | st.integers(1, 1500),
    producer_yields=st.dictionaries(st.integers(0, 2000), st.integers(1, 4), max_size=60),
    handler_yields=st.lists(st.integers(0, 3), min_size=1, max_size=10),
    ack_yields=st.lists(st.integers(0, 1), min_size=1, max_size=10),
)
def test_items_are_handed_out_once_in_order_in_bounded_batches_and_acked_after_their_handler(
    n, max_batch, max_buffered, producer_yields, handler_yields, ack_yields
):
    items = [f"e{i}" for i in range(n)]  # distinct, so "exactly once" is checkable item by item

    async def go():
        batcher: EventBatcher[str] = EventBatcher(max_batch, max_buffered)
        log: list[tuple] = []
        batches: list[list[str]] = []
        sizes_seen: list[int] = []
        acker = RecordingAcker(log, n, ack_yields)
        handler_pause = itertools.cycle(handler_yields)

        async def handle(batch):
            k = len(batches)
            log.append(("start", k))
            batches.append(list(batch))
            sizes_seen.append(len(batcher))
            for _ in range(next(handler_pause)):
                await asyncio.sleep(0)
                sizes_seen.append(len(batcher))
            log.append(("end", k))

        async def produce():
            for i, item in enumerate(items):
                for _ in range(producer_yields.get(i, 0)):
                    await asyncio.sleep(0)
                await batcher.put(item)
                sizes_seen.append(len(batcher))

        consumer = asyncio.create_task(process_batches(batcher, handle, acker))
        await produce()
        await acker.done.wait()
        await spin()  # a stray extra batch or ack would show up here
        assert not consumer.done()
        await stop(consumer)
        return batcher, log, batches, sizes_seen, acker.acked

    batcher, log, batches, sizes_seen, acked = run(go())

    assert batcher.max_buffered >= batcher.max_batch == max_batch
    # every item handed out exactly once, in put order
    assert [item for batch in batches for item in batch] == items
    assert all(1 <= len(batch) <= max_batch for batch in batches)
    # the buffer never held more than max_buffered, and is drained at the end
    assert max(sizes_seen, default=0) <= batcher.max_buffered
    assert len(batcher) == 0
    # acks: each item once, in put order
    assert acked == items
    # batches run strictly one after another, and each batch's events are all acked after its handler returned
    # and before the next batch's handler starts
    expected_log: list[tuple] = []
    for k, batch in enumerate(batches):
        expected_log += [("start", k), ("end", k)] + [("ack", item) for item in batch]
    assert log == expected_log


def test_batches_grow_to_max_batch_while_a_batch_is_in_flight():
    async def go():
        batcher: EventBatcher[int] = EventBatcher(4, 8)
        batches: list[list[int]] = []
        log: list[tuple] = []
        acker = RecordingAcker(log, 20)

        async def handle(batch):
            batches.append(list(batch))
            await spin(3)

        consumer = asyncio.create_task(process_batches(batcher, handle, acker))
        for i in range(20):  # the producer never yields unless the buffer is full
            await batcher.put(i)
        await acker.done.wait()
        await stop(consumer)
        return batches

    batches = run(go())
    assert [item for batch in batches for item in batch] == list(range(20))
    assert [len(batch) for batch in batches] == [4] * 5


# -- put blocks on a full buffer ------------------------------------------------------------------------------------


def test_put_blocks_while_the_buffer_is_full_and_resumes_once_a_batch_is_taken():
    async def go():
        batcher: EventBatcher[str] = EventBatcher(2, 2)
        await batcher.put("a")
        await batcher.put("b")
        third = asyncio.create_task(batcher.put("c"))
        await spin(10)
        assert not third.done()
        assert len(batcher) == 2

        assert await batcher.next_batch() == ["a", "b"]
        await spin(3)
        assert third.done()
        await third
        assert len(batcher) == 1
        assert await batcher.next_batch() == ["c"]
        assert len(batcher) == 0

    run(go())


def test_put_resumes_as_soon_as_one_slot_is_free():
    async def go():
        batcher: EventBatcher[int] = EventBatcher(1, 3)
        for i in range(3):
            await batcher.put(i)
        fourth = asyncio.create_task(batcher.put(3))
        await spin(10)
        assert not fourth.done()
        assert await batcher.next_batch() == [0]
        await spin(3)
        assert fourth.done()
        assert [await batcher.next_batch() for _ in range(3)] == [[1], [2], [3]]

    run(go())


def test_a_cancelled_blocked_put_adds_nothing():
    async def go():
        batcher: EventBatcher[str] = EventBatcher(1, 1)
        await batcher.put("a")
        blocked = asyncio.create_task(batcher.put("lost"))
        await spin()
        await stop(blocked)
        assert await batcher.next_batch() == ["a"]
        await batcher.put("b")
        assert await batcher.next_batch() == ["b"]
        assert len(batcher) == 0

    run(go())


# -- next_batch waits for the first event, not for a timer ----------------------------------------------------------


def test_next_batch_waits_while_empty_and_returns_as_soon_as_one_item_arrives():
    async def go():
        batcher: EventBatcher[str] = EventBatcher(100)
        waiting = asyncio.create_task(batcher.next_batch())
        await spin(10)
        assert not waiting.done()

        await batcher.put("only")
        await spin(3)  # no sleep with a delay: a timer would not have fired yet
        assert waiting.done()
        assert waiting.result() == ["only"]
        assert len(batcher) == 0

        # and again, after having been drained
        again = asyncio.create_task(batcher.next_batch())
        await spin(10)
        assert not again.done()
        await batcher.put("next")
        await spin(3)
        assert again.result() == ["next"]

    run(go())


def test_next_batch_takes_whatever_has_gathered_up_to_max_batch():
    async def go():
        batcher: EventBatcher[int] = EventBatcher(2, 10)
        for i in range(3):
            await batcher.put(i)
        first = await batcher.next_batch()
        second = await batcher.next_batch()
        await batcher.put(3)
        third = await batcher.next_batch()
        return first, second, third

    assert run(go()) == ([0, 1], [2], [3])


def test_a_cancelled_next_batch_loses_nothing():
    async def go():
        batcher: EventBatcher[str] = EventBatcher(5)
        waiting = asyncio.create_task(batcher.next_batch())
        await spin()
        await stop(waiting)
        await batcher.put("a")
        await batcher.put("b")
        assert await batcher.next_batch() == ["a", "b"]

    run(go())


# -- a failing handler ----------------------------------------------------------------------------------------------


def test_a_failing_handler_propagates_and_its_batch_is_not_acked():
    class Boom(Exception):
        pass

    async def go():
        batcher: EventBatcher[int] = EventBatcher(2, 10)
        for i in range(7):
            await batcher.put(i)
        log: list[tuple] = []
        acker = RecordingAcker(log, 7)
        handled: list[list[int]] = []

        async def handle(batch):
            handled.append(list(batch))
            await asyncio.sleep(0)
            if 3 in batch:
                raise Boom(list(batch))

        with pytest.raises(Boom) as raised:
            await process_batches(batcher, handle, acker)
        rest = [await batcher.next_batch(), await batcher.next_batch()]
        return raised.value, handled, acker.acked, rest

    error, handled, acked, rest = run(go())
    assert error.args == ([2, 3],)
    assert handled == [[0, 1], [2, 3]]
    assert acked == [0, 1]  # the previous batch is acked, nothing of the failed one
    # what was not handed out yet stays buffered, in order
    assert rest == [[4, 5], [6]]


def test_a_handler_failing_on_the_first_batch_acks_nothing():
    async def go():
        batcher: EventBatcher[str] = EventBatcher(3)
        await batcher.put("x")
        acker = RecordingAcker([], 1)

        async def handle(batch):
            raise RuntimeError("handler failed")

        with pytest.raises(RuntimeError, match="handler failed"):
            await process_batches(batcher, handle, acker)
        return acker.acked

    assert run(go()) == []


# -- construction ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_batch", [0, -1])
def test_max_batch_below_one_is_rejected(max_batch):
    with pytest.raises(ValueError, match="max_batch"):
        EventBatcher(max_batch)


@pytest.mark.parametrize("max_buffered", [0, -3])
def test_max_buffered_below_one_is_rejected(max_buffered):
    with pytest.raises(ValueError, match="max_buffered"):
        EventBatcher(5, max_buffered)


def test_max_buffered_defaults_to_twice_max_batch_and_is_never_below_max_batch():
    assert EventBatcher(1).max_buffered == 2
    assert EventBatcher(5).max_buffered == 10
    assert EventBatcher(5, 1).max_buffered == 5
    assert EventBatcher(5, 4).max_buffered == 5
    assert EventBatcher(5, 5).max_buffered == 5
    assert EventBatcher(5, 7).max_buffered == 7
    assert EventBatcher(5, 7).max_batch == 5


def test_max_buffered_below_max_batch_is_raised_and_still_bounds_the_buffer():
    async def go():
        batcher: EventBatcher[int] = EventBatcher(3, 1)
        for i in range(3):
            await batcher.put(i)
        blocked = asyncio.create_task(batcher.put(3))
        await spin(10)
        assert not blocked.done() and len(batcher) == 3
        assert await batcher.next_batch() == [0, 1, 2]
        await blocked
        assert await batcher.next_batch() == [3]

    run(go())


# -- two-phase handlers: the next batch's first phase overlaps the previous batch's second --------------------------


def test_a_second_phase_overlaps_the_next_first_phase_and_acks_wait_for_it_in_order():
    async def go():
        batcher: EventBatcher[int] = EventBatcher(2, 8)
        log: list[tuple] = []
        acker = RecordingAcker(log, 6)
        gates: list[asyncio.Event] = []

        async def second_phase(k: int, gate: asyncio.Event) -> None:
            await gate.wait()
            log.append(("finished", k))

        async def handle(batch):
            k = len(gates)
            log.append(("start", k))
            gates.append(asyncio.Event())
            return asyncio.ensure_future(second_phase(k, gates[k]))

        for i in range(6):
            await batcher.put(i)
        consumer = asyncio.create_task(process_batches(batcher, handle, acker))
        await spin()
        # batch 1 started while batch 0 is unfinished, but batch 2 waits for batch 0
        assert log == [("start", 0), ("start", 1)] and acker.acked == []
        gates[1].set()
        await spin()
        assert acker.acked == []  # batch 1 is done, but batch 0 is not: nothing is acknowledged out of order
        gates[0].set()
        await spin()
        assert acker.acked == [0, 1, 2, 3] and ("start", 2) in log
        gates[2].set()
        await acker.done.wait()
        await stop(consumer)
        return log, acker.acked

    log, acked = run(go())
    assert acked == list(range(6))
    assert log.index(("finished", 0)) < log.index(("ack", 0)) and log.index(("finished", 1)) < log.index(("ack", 2))


def test_a_failed_second_phase_ends_the_loop_even_with_no_new_batch_and_nothing_of_it_is_acked():
    async def go():
        batcher: EventBatcher[int] = EventBatcher(5)
        log: list[tuple] = []
        acker = RecordingAcker(log, 99)
        failing = asyncio.Event()

        async def second_phase() -> None:
            await failing.wait()
            raise RuntimeError("finalize failed")

        async def handle(batch):
            return asyncio.ensure_future(second_phase())

        await batcher.put(1)
        consumer = asyncio.create_task(process_batches(batcher, handle, acker))
        await spin()
        failing.set()
        with pytest.raises(RuntimeError, match="finalize failed"):
            await consumer
        return acker.acked

    assert run(go()) == []


def test_with_less_than_half_a_batch_waiting_the_next_batch_waits_for_the_previous_to_finish():
    async def go():
        batcher: EventBatcher[int] = EventBatcher(4, 8)
        log: list[tuple] = []
        acker = RecordingAcker(log, 5)
        gate = asyncio.Event()

        async def handle(batch):
            log.append(("start", list(batch)))
            return asyncio.ensure_future(gate.wait())

        for i in range(5):
            await batcher.put(i)
        consumer = asyncio.create_task(process_batches(batcher, handle, acker))
        await spin()
        assert log == [("start", [0, 1, 2, 3])]  # one event waiting is not worth a batch of its own yet
        await batcher.put(5)  # two waiting: half a batch
        await spin()
        assert log[-1] == ("start", [4, 5]) and acker.acked == []
        gate.set()
        await acker.done.wait()
        await stop(consumer)
        return acker.acked

    assert run(go())[:4] == [0, 1, 2, 3]



def _all_cpu_run(backlog):
    """1,000 events handed over one loop pass at a time to a handler that never awaits; the batch sizes."""

    async def go():
        batcher: EventBatcher[int] = EventBatcher(max_batch=100)
        sizes: list[int] = []
        total = 1000

        async def handle(batch):
            sizes.append(len(batch))  # all CPU: no await

        acker = RecordingAcker([], expected=total)
        lag = (lambda: total - len(acker.acked)) if backlog else None
        runner = asyncio.ensure_future(process_batches(batcher, handle, acker, lag))
        for i in range(total):
            await batcher.put(i)
            await asyncio.sleep(0)  # faust hands events over one loop pass at a time
        await acker.done.wait()
        await stop(runner)
        return sizes, acker.acked

    return run(go())


def test_while_the_consumer_is_behind_a_batch_waits_for_half_a_batch_instead_of_taking_a_sliver():
    sizes, acked = _all_cpu_run(backlog=True)
    assert acked == list(range(1000))
    # half a batch at least while more than that is behind; slivers only in the last ~50 events
    assert min(sizes[:15]) >= 50 and sum(sizes[15:]) <= 250


def test_without_a_backlog_signal_an_all_cpu_handler_takes_slivers():
    """The behaviour the backlog signal fixes (and what a one-process, low-rate stream still gets)."""
    sizes, acked = _all_cpu_run(backlog=False)
    assert acked == list(range(1000)) and max(sizes) <= 2


def test_with_no_backlog_beyond_the_buffer_nothing_waits():
    async def go():
        batcher: EventBatcher[int] = EventBatcher(max_batch=100)
        got: list[list[int]] = []

        async def handle(batch):
            got.append(list(batch))

        acker = RecordingAcker([], expected=1)
        runner = asyncio.ensure_future(process_batches(batcher, handle, acker, lambda: len(batcher)))
        await batcher.put(1)
        await asyncio.wait_for(acker.done.wait(), 0.05)  # far less than FILL_WAIT_S: it did not wait
        await stop(runner)
        return got

    assert run(go()) == [[1]]
