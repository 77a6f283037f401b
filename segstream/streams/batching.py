"""Micro-batches formed while the previous batch is being processed.

faust's ``stream.take_events`` stops feeding its buffer while the loop body runs, so faust's own per-event
work (measured at ~60 us/event, the bare-faust ceiling) and the batch's Redis and Kafka round trips add up
instead of overlapping. Here the faust agent only appends events to an :class:`EventBatcher`, and one
processing task takes whatever has gathered each time it is free (:func:`process_batches`):

* under load the buffer fills while a batch is in flight, so batches grow to ``max_batch`` by themselves;
* at a low rate a batch is whatever arrived since the last one, so no event waits for a timer to fire;
* ``max_buffered`` bounds the buffer: a full buffer blocks the agent, faust's stream buffer fills, and the
  consumer stops fetching (back-pressure instead of unbounded memory).

Batches start in consumption order, and a batch's events are acknowledged, in order, only once it is fully
processed. A handler may process in two phases (the worker: apply, score and send; then deliver and
finalize): the next batch's first phase may then overlap the previous batch's second phase, once half a
batch is waiting, but never more than one batch is behind.
This module knows nothing of faust: anything with an awaitable ``ack(event)`` will do, and
:func:`consume_in_batches` takes any stream with ``noack()`` and ``events()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
# The longest a batch waits for half a batch to gather while the consumer is behind (see _fill_while_behind).
FILL_WAIT_S = 0.1
T_contra = TypeVar("T_contra", contravariant=True)


class Acker(Protocol[T_contra]):
    """What acknowledges a processed event (a faust stream)."""

    async def ack(self, event: T_contra) -> bool:
        """Acknowledge one event."""
        ...


class EventBatcher(Generic[T]):
    """A bounded FIFO of consumed events, handed out in batches of at most ``max_batch``."""

    def __init__(self, max_batch: int, max_buffered: int | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = max_batch
        if max_buffered is not None and max_buffered < 1:
            raise ValueError("max_buffered must be >= 1")
        self.max_buffered = max(2 * max_batch if max_buffered is None else max_buffered, max_batch)
        self._buffer: list[T] = []
        self._has_events = asyncio.Event()
        self._has_space = asyncio.Event()
        self._has_space.set()

    def __len__(self) -> int:
        return len(self._buffer)

    async def put(self, item: T) -> None:
        """Append one event; waits while the buffer is full."""
        while len(self._buffer) >= self.max_buffered:
            self._has_space.clear()
            await self._has_space.wait()
        self._buffer.append(item)
        self._has_events.set()

    async def wait_filled(self, count: int) -> None:
        """Wait until at least ``count`` events (capped at ``max_buffered``) are buffered."""
        count = min(count, self.max_buffered)
        while len(self._buffer) < count:
            self._has_events.clear()
            await self._has_events.wait()

    async def next_batch(self) -> list[T]:
        """The oldest buffered events (at least one, at most ``max_batch``); waits while there are none."""
        while not self._buffer:
            self._has_events.clear()
            await self._has_events.wait()
        batch = self._buffer[: self.max_batch]
        del self._buffer[: self.max_batch]
        if len(self._buffer) < self.max_buffered:
            self._has_space.set()
        return batch


async def process_batches(
    batcher: EventBatcher[T],
    handle: Callable[[Sequence[T]], Awaitable[object]],
    acker: Acker[T],
    backlog: Callable[[], int] | None = None,
) -> None:
    """Forever: take the next batch, run ``handle`` on it, then acknowledge its events in order.

    ``handle`` may finish a batch in two phases: it returns once the first phase is done, with an awaitable
    for the rest (anything else means there is no rest). The next batch's first phase then runs while the
    previous batch's second phase does, never further behind than that. Batches are acknowledged in order,
    each only once its second phase is done. An exception from either phase ends the loop (raised here)
    before anything of that batch is acknowledged, even while no new batch arrives.

    ``backlog`` (the consumer's lag: events behind the log end, those buffered and in flight included)
    lets a batch wait for half a batch to gather while more than that is waiting beyond the buffer; see
    :func:`_fill_while_behind`.
    """
    ack = acker.ack
    previous: asyncio.Future[None] | None = None
    try:
        while True:
            if previous is not None:
                await _wait_unless_failed(batcher, previous)
            await _fill_while_behind(batcher, backlog)
            batch = await batcher.next_batch()
            rest = await handle(batch)
            if not inspect.isawaitable(rest):  # done in one phase: acknowledge before the next batch starts
                if previous is not None:
                    await previous
                    previous = None
                for event in batch:
                    await ack(event)
                continue
            acked = asyncio.ensure_future(_ack_after(batch, rest, previous, ack))
            if previous is not None:
                await previous
            previous = acked
    finally:
        if previous is not None and not previous.done():
            previous.cancel()


async def _wait_unless_failed(batcher: EventBatcher[T], previous: asyncio.Future[None]) -> None:
    """Before the next batch: wait until half a batch is waiting or the previous batch has finished.

    Starting whatever has gathered at once made batches of ~50 events at full load, and each batch has fixed
    costs (two Redis round trips, a produce request per partition): throughput fell. Waiting for half a batch
    keeps batches large when behind and one-at-a-time when not. The previous batch's failure is raised as
    soon as it happens.
    """
    if not previous.done():
        filling = asyncio.ensure_future(batcher.wait_filled(max(1, batcher.max_batch // 2)))
        waiting: list[asyncio.Future[Any]] = [filling, previous]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        filling.cancel()
    if previous.done():
        previous.result()  # raises the failure, if any


async def _fill_while_behind(batcher: EventBatcher[T], backlog: Callable[[], int] | None) -> None:
    """While the consumer is behind, wait (at most :data:`FILL_WAIT_S`) for half a batch to gather.

    The agent filling the buffer runs only while the batch task awaits. A worker that awaits little (its
    batch work is mostly its own CPU, as with the fold in Python) took a batch each time the previous one
    finished, with only ~45 events gathered at full load, and paid each batch's fixed costs for them: 5.9k
    events/s against 8.8k with batches of ~540. Waiting while more than half a batch is behind the buffer
    gives the agent the CPU to hand over a large batch; with no backlog nothing waits, so latency at
    moderate rates is unchanged.
    """
    if backlog is None:
        return
    half = max(1, batcher.max_batch // 2)
    buffered = len(batcher)
    if buffered >= half or backlog() - buffered < half:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(batcher.wait_filled(half), FILL_WAIT_S)


async def _ack_after(
    batch: Sequence[T],
    rest: Awaitable[object],
    previous: asyncio.Future[None] | None,
    ack: Callable[[T], Awaitable[bool]],
) -> None:
    await rest
    if previous is not None:
        await previous
    for event in batch:
        await ack(event)


async def consume_in_batches(
    stream: Any,
    max_batch: int,
    handle: Callable[[Sequence[Any]], Awaitable[object]],
    on_failure: Callable[[BaseException | None], None] | None = None,
    backlog: Callable[[], int] | None = None,
) -> None:
    """Feed a stream's events into an :class:`EventBatcher` and process them with :func:`process_batches`.

    The stream is switched to manual acknowledgement (``stream.noack()``): events are acknowledged only by
    :func:`process_batches`, after ``handle`` returned for their batch. ``on_failure`` is called if the
    batch loop ever ends other than by cancellation (the worker exits then, so nothing is committed).
    ``backlog``: the consumer's lag, see :func:`process_batches`.
    """
    manual = stream.noack()
    batcher: EventBatcher[Any] = EventBatcher(max_batch, 2 * max_batch)
    runner = asyncio.ensure_future(process_batches(batcher, handle, manual, backlog))
    if on_failure is not None:
        runner.add_done_callback(lambda task: None if task.cancelled() else on_failure(task.exception()))
    try:
        async for event in manual.events():
            await batcher.put(event)
    finally:
        runner.cancel()
