"""The worker's heap and Python's cyclic garbage collector: fewer long pauses, and pauses made visible.

Measured in the bench worker: with the libraries and the model loaded (~170k objects), one full (gen 2)
collection stopped the event loop for 90-140 ms, and a 100k-event run had eight of them, about 1 s in
all. Every event in flight waits for such a pause, so they set the tail of produce -> scored latency.

:func:`settle_heap` moves what is alive once the model is loaded into the collector's permanent
generation (:func:`gc.freeze`): those objects are never traversed again, and a full collection only walks
what the worker allocated since. Measured the same way: full collections then took ~5 ms each.
It also makes young collections rarer (:data:`COLLECTOR_THRESHOLDS`).
:class:`GcPauses` times every collection so ``/metrics`` shows what is left.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

# Young collections after 20,000 net new container objects instead of CPython's 700. A batch keeps ~1,000
# consumed events (each several containers) alive across hundreds of young collections, which then traversed
# them again and again: 1,000 young and 90 middle collections took ~290 ms of a 60k-event run (~4% of the
# worker). With these thresholds: 3 collections, 19 ms, the longest 8 ms. Garbage cycles wait a little
# longer to be reclaimed; the worker makes few.
COLLECTOR_THRESHOLDS = (20_000, 20, 20)


def settle_heap() -> None:
    """Collect everything once, then freeze the survivors out of future collections.

    Call it after work that leaves many long-lived objects: start-up with the first model, and each model
    swap. Frozen objects are still freed by reference counting when dropped; unfreezing first lets this full
    collection also reclaim cycles among objects frozen last time (say, the previous model's). It also sets
    :data:`COLLECTOR_THRESHOLDS`.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


@dataclass
class GcPauses:
    """Counts and times garbage collections per generation through :data:`gc.callbacks`.

    Attributes:
        collections: Collections per generation (0, 1, 2).
        seconds: Time spent collecting per generation.
        longest_s: The longest single collection.
    """

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest_s: float = 0.0
    _started: float = 0.0

    def install(self) -> GcPauses:
        """Start timing collections (idempotent)."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        return self

    def uninstall(self) -> None:
        """Stop timing collections."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = min(int(info.get("generation", 2)), 2)
        self.collections[generation] += 1
        self.seconds[generation] += took
        self.longest_s = max(self.longest_s, took)
