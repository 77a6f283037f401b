"""Worker counters, the live segment mix and its drift against training, and the ``monitoring`` record.

Drift is the population stability index (PSI) between the segment shares the model saw in training and
the shares among the customers this worker has evaluated since it started (each customer counted once,
in its current segment). Rule of thumb: below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 a real
change worth retraining for. The mix keeps one small int per customer seen, in memory.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segstream.streams.heap import GcPauses

PSI_EPSILON = 1e-4


def psi(expected: Mapping[int, float], actual: Mapping[int, float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index ``sum((a - e) * ln(a / e))`` over the union of segments.

    Shares are renormalised; a segment missing on one side counts as ``epsilon`` there so the index stays
    finite. Returns 0.0 when either side is empty.
    """
    e_total = sum(v for v in expected.values() if v > 0)
    a_total = sum(v for v in actual.values() if v > 0)
    if e_total <= 0 or a_total <= 0:
        return 0.0
    total = 0.0
    for key in set(expected) | set(actual):
        e = max(max(expected.get(key, 0.0), 0.0) / e_total, epsilon)
        a = max(max(actual.get(key, 0.0), 0.0) / a_total, epsilon)
        total += (a - e) * math.log(a / e)
    return total


class SegmentMix:
    """Each evaluated customer's current segment, and the counts per segment."""

    def __init__(self) -> None:
        self._of: dict[str, int] = {}
        self.counts: Counter[int] = Counter()

    def observe(self, customer_id: str, segment: int) -> None:
        """Record a customer's segment after an evaluation."""
        old = self._of.get(customer_id)
        if old == segment:
            return
        if old is not None:
            self.counts[old] -= 1
        self._of[customer_id] = segment
        self.counts[segment] += 1

    def shares(self) -> dict[int, float]:
        """Segment -> share of the customers seen."""
        total = sum(self.counts.values())
        return {k: v / total for k, v in sorted(self.counts.items()) if v > 0} if total else {}


@dataclass
class WorkerStats:
    """Counters the pipeline, the sweep and the forecast refresh update."""

    processed: int = 0  # events scored and emitted (first deliveries and crash redeliveries)
    dead_letters: int = 0
    duplicates: int = 0
    batches: int = 0
    changes: int = 0
    inactivity_changes: int = 0
    sweeps: int = 0
    forecast_refreshes: int = 0
    store_retries: int = 0
    # Each batch's duration from its start to its finalize, summed; batches overlap, so this is not busy time.
    batch_seconds: float = 0.0
    # Seconds per pipeline stage, summed over batches (parse, apply, score, send, deliver, finalize): where a
    # batch's time goes, for operators and the benchmark.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    # (topic, partition) -> the last offset finalized
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    mix: SegmentMix = field(default_factory=SegmentMix)
    gc: GcPauses = field(default_factory=GcPauses)  # timed only once installed (the worker does)
    _last_time: float = field(default_factory=time.monotonic)
    _last_processed: int = 0

    def add_stage(self, stage: str, seconds: float) -> None:
        """Add time spent in one pipeline stage."""
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def note_offsets(self, topic: str, partition: int, offset: int) -> None:
        """Remember the highest offset processed on a partition."""
        key = (topic, partition)
        if offset > self.offsets.get(key, -1):
            self.offsets[key] = offset

    def rate_since_last(self) -> float:
        """Events per second since the previous call (the monitoring interval)."""
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-9)
        rate = (self.processed - self._last_processed) / elapsed
        self._last_time, self._last_processed = now, self.processed
        return rate

    def overall_rate(self) -> float:
        """Events per second since the worker started."""
        return self.processed / max(time.time() - self.started_at, 1e-9)


def monitoring_record(
    stats: WorkerStats,
    *,
    model_version: str | None,
    training_mix: Mapping[int, float] | None,
    lag: Mapping[str, int] | None,
    watermark_ms: int,
    events_per_s: float,
    worker_id: str,
) -> dict[str, Any]:
    """The JSON record published to ``monitoring`` every interval."""
    live = stats.mix.shares()
    training = {int(k): float(v) for k, v in (training_mix or {}).items()}
    lag_total = sum(lag.values()) if lag else None
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "worker": worker_id,
        "model_version": model_version,
        "events_per_s": round(events_per_s, 2),
        "events_per_s_overall": round(stats.overall_rate(), 2),
        "processed": stats.processed,
        "dead_letters": stats.dead_letters,
        "duplicates_skipped": stats.duplicates,
        "segment_changes": stats.changes,
        "inactivity_changes": stats.inactivity_changes,
        "batches": stats.batches,
        "consumer_lag": lag_total,
        "lag_by_partition": dict(lag or {}),
        "watermark_ms": watermark_ms,
        "segment_mix": {"live": {str(k): round(v, 6) for k, v in live.items()},
                        "training": {str(k): round(v, 6) for k, v in training.items()}},
        "customers_seen": sum(stats.mix.counts.values()),
        "drift_psi": round(psi(training, live), 6) if live and training else None,
    }  # fmt: skip
