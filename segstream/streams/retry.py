"""Back off and retry store and broker calls that failed for a transient reason; never drop a batch.

The worker must not acknowledge (and so commit) a batch whose state was not written. When Redis is down
the batch simply waits here, logging one clear line per attempt, until Redis answers again; Kafka keeps
the unconsumed events meanwhile. Anything that is not a connection-type failure is a bug or a broken
deployment and is raised to the caller, which stops the process without committing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions

log = logging.getLogger("segstream.worker")

T = TypeVar("T")

# BusyLoadingError (Redis replaying its AOF after a restart) derives from ConnectionError.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    what: str,
    *,
    initial_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
    give_up_after_s: float | None = None,
) -> T:
    """Run ``operation`` until it succeeds, backing off exponentially on transient errors.

    Args:
        operation: A coroutine factory (called again for every attempt).
        what: What is being attempted, for the log line (e.g. "apply batch of 500 events to Redis").
        initial_delay_s: First back-off delay.
        max_delay_s: Largest back-off delay.
        give_up_after_s: Re-raise the last transient error after this long; ``None`` retries forever.

    Returns:
        The operation's result.

    Raises:
        Exception: A non-transient error at once, or the last transient one after ``give_up_after_s``.
    """
    delay = initial_delay_s
    loop = asyncio.get_running_loop()
    started = loop.time()
    attempt = 0
    while True:
        attempt += 1
        try:
            result = await operation()
        except TRANSIENT_ERRORS as exc:
            waited = loop.time() - started
            if give_up_after_s is not None and waited >= give_up_after_s:
                raise
            log.warning(
                "%s failed (attempt %d, %.1fs so far): %s: %s; retrying in %.1fs, nothing is dropped",
                what, attempt, waited, type(exc).__name__, exc, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
            continue
        if attempt > 1:
            log.warning("%s succeeded after %d attempts", what, attempt)
        return result
