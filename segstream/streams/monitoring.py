"""Worker counters, the live segment mix and its drift against training, and the ``monitoring`` record.

Drift is the population stability index (PSI) between the segment shares the model saw in training and
the shares among the customers this worker has evaluated since it started (each customer counted once,
in its current segment). Rule of thumb: below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 a real
change worth retraining for. The mix keeps one small int per customer seen, in memory.

Dead letters are counted by reason code, in total and over a sliding window of the last N seconds (one
bucket per second, so memory is fixed by N and the number of reason codes). When dead letters are at least
a set share of the events in the window, the worker is in a dead-letter alert: a WARNING is logged when it
starts, an INFO when it clears, and ``/health`` says "degraded".
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from segstream.models.changes import DEFAULT_FLAP_WINDOW_DAYS, FlapCounter, flap_rate  # noqa: F401 (re-exported)
from segstream.streams.heap import GcPauses

log = logging.getLogger("segstream.worker")

PSI_EPSILON = 1e-4
DEFAULT_DEAD_LETTER_ALERT_SHARE = 0.5
DEFAULT_DEAD_LETTER_WINDOW_S = 60
DEFAULT_DEAD_LETTER_MIN_EVENTS = 10
TOP_REASONS = 5


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


class DeadLetterWindow:
    """Valid events and dead letters (by reason) over the last ``window_s`` seconds of a monotonic clock.

    One bucket per whole second, in a ring of ``window_s`` buckets: the window is the current second and the
    ``window_s - 1`` before it, so an event counts while ``floor(its time) > floor(now) - window_s``. Adding
    is O(1); reading sums the ring (O(window_s)), which the monitoring tick and ``/health`` do.
    """

    def __init__(self, window_s: int = DEFAULT_DEAD_LETTER_WINDOW_S, clock: Callable[[], float] = time.monotonic):
        if int(window_s) < 1:
            raise ValueError(f"window_s must be at least 1 second, got {window_s!r}")
        self.window_s = int(window_s)
        self._clock = clock
        self._second: list[int | None] = [None] * self.window_s
        self._valid = [0] * self.window_s
        self._dead = [0] * self.window_s
        self._reasons: list[Counter[str]] = [Counter() for _ in range(self.window_s)]

    def _bucket(self) -> int:
        second = math.floor(self._clock())
        i = second % self.window_s
        if self._second[i] != second:  # a bucket left over from an earlier lap of the ring
            self._second[i] = second
            self._valid[i] = self._dead[i] = 0
            self._reasons[i].clear()
        return i

    def add_valid(self, n: int = 1) -> None:
        """Count ``n`` events that parsed (scored or recognised as duplicates)."""
        if n > 0:
            self._valid[self._bucket()] += n

    def add_dead_letter(self, reason_code: str) -> None:
        """Count one dead letter."""
        i = self._bucket()
        self._dead[i] += 1
        self._reasons[i][reason_code] += 1

    def totals(self) -> tuple[int, int, Counter[str]]:
        """``(valid events, dead letters, dead letters by reason)`` within the window now."""
        now = math.floor(self._clock())
        valid = dead = 0
        reasons: Counter[str] = Counter()
        for i, second in enumerate(self._second):
            if second is not None and now - self.window_s < second <= now:
                valid += self._valid[i]
                dead += self._dead[i]
                reasons.update(self._reasons[i])
        return valid, dead, reasons


@dataclass(frozen=True)
class DeadLetterStatus:
    """The dead-letter window as of one reading, and whether it is in alert."""

    share: float  # dead letters / (dead letters + valid events) in the window; 0.0 for an empty window
    dead_letters: int
    valid: int
    window_s: int
    threshold: float
    min_events: int
    alert: bool
    reasons: dict[str, int]  # within the window, most frequent first

    @property
    def events(self) -> int:
        """Dead letters plus valid events in the window."""
        return self.dead_letters + self.valid

    def top_reasons(self, n: int = TOP_REASONS) -> list[tuple[str, int]]:
        """The ``n`` most frequent reason codes in the window, with their counts."""
        return list(self.reasons.items())[:n]

    def describe(self) -> str:
        """One line for the log."""
        top = ", ".join(f"{reason}={count}" for reason, count in self.top_reasons()) or "none"
        return (f"{self.share:.1%} of events over the last {self.window_s} s are dead letters ({self.dead_letters} "
                f"of {self.events}; alert at {self.threshold:.1%}); top reasons: {top}")  # fmt: skip


def _most_common(counts: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0}


@dataclass
class WorkerStats:
    """Counters the pipeline, the sweep and the forecast refresh update."""

    processed: int = 0  # events scored and emitted (first deliveries and crash redeliveries)
    dead_letters: int = 0
    duplicates: int = 0
    batches: int = 0
    changes: int = 0
    tree_disagreements: int = 0  # changes whose decision tree predicts another segment than the segmenter
    flaps: FlapCounter = field(default_factory=FlapCounter)
    campaign_triggers: int = 0
    campaign_suppressed: Counter[str] = field(default_factory=Counter)  # by why: cooldown, cap, conditions
    inactivity_changes: int = 0
    sweeps: int = 0
    swept_customers: int = 0  # evaluations the inactivity sweep made (this worker's leased shards only)
    profiles_stored: int = 0  # customer-profile records written (deletions included)
    profile_changes: int = 0  # segment changes caused by a new profile
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
    # Dead letters by reason code since the start (``dead_letters`` is their sum once batches finish), the
    # sliding window the alert reads, and the alert's knobs (WorkerSettings.dead_letter_alert_*).
    dead_letters_by_reason: Counter[str] = field(default_factory=Counter)
    dead_letter_window: DeadLetterWindow = field(default_factory=DeadLetterWindow)
    dead_letter_alert_share: float = DEFAULT_DEAD_LETTER_ALERT_SHARE
    dead_letter_alert_min_events: int = DEFAULT_DEAD_LETTER_MIN_EVENTS
    _last_time: float = field(default_factory=time.monotonic)
    _last_processed: int = 0
    _dead_letter_alerting: bool = False

    def add_stage(self, stage: str, seconds: float) -> None:
        """Add time spent in one pipeline stage."""
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def note_changes(self, changes: Iterable[Any]) -> None:
        """Count emitted changes (``SegmentChange``): the total, tree disagreements and flaps."""
        for change in changes:
            self.changes += 1
            self.tree_disagreements += int(change.tree_agrees is False)
            self.flaps.observe(change.customer_id, change.previous_segment, change.segment, change.event_time_ms)

    def note_triggers(self, fired: int, suppressed: Mapping[str, int]) -> None:
        """Count campaign triggers sent and the ones the rules held back, by why."""
        self.campaign_triggers += fired
        self.campaign_suppressed.update(suppressed)

    def note_offsets(self, topic: str, partition: int, offset: int) -> None:
        """Remember the highest offset processed on a partition."""
        key = (topic, partition)
        if offset > self.offsets.get(key, -1):
            self.offsets[key] = offset

    def note_dead_letter(self, reason_code: str) -> None:
        """Count one dead letter under its reason code (the pipeline calls this once per dead letter).

        Does not touch ``dead_letters``, which the pipeline adds per batch when the batch finishes.
        """
        self.dead_letters_by_reason[reason_code] += 1
        self.dead_letter_window.add_dead_letter(reason_code)

    def note_valid(self, n: int) -> None:
        """Count ``n`` events of a batch that parsed (the dead-letter share's other side)."""
        self.dead_letter_window.add_valid(n)

    def dead_letter_status(self) -> DeadLetterStatus:
        """Read the window, decide the alert, and log when it starts (WARNING) or clears (INFO).

        In alert when the window holds at least ``dead_letter_alert_min_events`` events and dead letters are
        at least ``dead_letter_alert_share`` of them. Logged on changes only, whichever reader (the
        monitoring tick, ``/health``) sees the change first.
        """
        window = self.dead_letter_window
        valid, dead, reasons = window.totals()
        events = valid + dead
        share = dead / events if events else 0.0
        alert = events >= self.dead_letter_alert_min_events and share >= self.dead_letter_alert_share
        status = DeadLetterStatus(share=share, dead_letters=dead, valid=valid, window_s=window.window_s,
                                  threshold=self.dead_letter_alert_share, min_events=self.dead_letter_alert_min_events,
                                  alert=alert, reasons=_most_common(reasons))  # fmt: skip
        if alert and not self._dead_letter_alerting:
            log.warning("dead-letter alert: %s", status.describe())
        elif not alert and self._dead_letter_alerting:
            log.info("dead-letter alert cleared: %s", status.describe())
        self._dead_letter_alerting = alert
        return status

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
    dl = stats.dead_letter_status()
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
        "changes_per_1000_events": round(1000.0 * stats.changes / stats.processed, 3) if stats.processed else None,
        "tree_disagreement_share": round(stats.tree_disagreements / stats.changes, 6) if stats.changes else None,
        "flap_rate": round(stats.flaps.rate, 6),
        "flap_window_days": stats.flaps.window_ms / 86_400_000,
        "campaign_triggers": stats.campaign_triggers,
        "campaign_suppressed": dict(sorted(stats.campaign_suppressed.items())),
        "inactivity_changes": stats.inactivity_changes,
        "batches": stats.batches,
        "consumer_lag": lag_total,
        "lag_by_partition": dict(lag or {}),
        "watermark_ms": watermark_ms,
        "segment_mix": {"live": {str(k): round(v, 6) for k, v in live.items()},
                        "training": {str(k): round(v, 6) for k, v in training.items()}},
        "customers_seen": sum(stats.mix.counts.values()),
        "drift_psi": round(psi(training, live), 6) if live and training else None,
        "dead_letter_share": round(dl.share, 6),
        "dead_letter_alert": dl.alert,
        "dead_letter_alert_share": dl.threshold,
        "dead_letter_window_s": dl.window_s,
        "dead_letters_window": dl.dead_letters,
        "events_window": dl.events,
        "dead_letters_by_reason": _most_common(stats.dead_letters_by_reason),
        "dead_letters_by_reason_window": dl.reasons,
    }  # fmt: skip
