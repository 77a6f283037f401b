"""What the benchmark feeds the worker: realistic events and a small trained bundle.

Events come from the project's own generator (:func:`segstream.trainer.generate.generate_transactions`,
cleaned with :func:`~segstream.trainer.cleaning.clean_transactions`), so amounts, returns and the
customers' purchase rhythm look like the data the model was trained on. The history is sized to give about
``events`` rows over ``customers`` customers; the most recent ``events`` rows are kept, in time order, as
``segstream replay`` would send them. Event ids carry the run id so no two runs share a dedupe key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The generator makes about this many rows per customer per year (see ``segstream generate --help``).
_ROWS_PER_CUSTOMER_YEAR = 20.0
_MAX_DAYS = 3650


@dataclass
class Workload:
    """Events ready to produce.

    Attributes:
        records: Event-contract dicts in time order (``timestamp`` in epoch milliseconds).
        keys: The Kafka key (customer id) of every record.
        values: The JSON bytes of every record.
        customers: Distinct customers among the records.
        span_days: Days of event time the records cover.
    """

    records: list[dict[str, Any]]
    keys: list[bytes]
    values: list[bytes]
    customers: int
    span_days: float

    def __len__(self) -> int:
        return len(self.records)

    def pairs(self, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs, the first ``limit`` of them (all by default)."""
        n = len(self.values) if limit is None else min(limit, len(self.values))
        for i in range(n):
            yield self.keys[i], self.values[i]


def history_days(events: int, customers: int) -> int:
    """Days of generated history that give about ``events`` rows for ``customers`` customers (+10%)."""
    per_day = customers * _ROWS_PER_CUSTOMER_YEAR / 365.0
    return max(1, min(_MAX_DAYS, math.ceil(1.1 * events / per_day)))


def make_workload(events: int, customers: int, seed: int, run_id: str) -> Workload:
    """Generate, clean and serialise about ``events`` events of ``customers`` customers.

    Args:
        events: How many events to keep (fewer if the generator made fewer).
        customers: Customers to generate (those with no event among the kept rows are absent).
        seed: Generator seed.
        run_id: Prefix of every event id (unique per run).
    """
    from segstream.streams.replay import records_from_frame
    from segstream.trainer.cleaning import clean_transactions
    from segstream.trainer.generate import generate_transactions

    raw = generate_transactions(customers, history_days(events, customers), seed, dirty_fraction=0.0)
    clean, _ = clean_transactions(raw, "bench")
    clean = clean.iloc[-events:] if len(clean) > events else clean
    records = records_from_frame(clean)
    for rec in records:
        rec["event_id"] = f"{run_id}-{rec['event_id']}"
    keys = [str(r["customer_id"]).encode() for r in records]
    values = [json.dumps(r, separators=(",", ":")).encode() for r in records]
    span = (records[-1]["timestamp"] - records[0]["timestamp"]) / 86_400_000 if records else 0.0
    return Workload(records, keys, values, len(set(keys)), float(span))


def follow_up_record(workload: Workload, i: int, run_id: str, sent_ns: int) -> dict[str, Any]:
    """The ``i``-th extra event for the latency phase: a copy of a workload event, later and with a new id.

    The send time travels in the payload (``bench_sent_ns``), which the worker passes through unchanged
    to ``transactions.scored``.
    """
    base = workload.records[i % len(workload.records)]
    last_ts = workload.records[-1]["timestamp"]
    return {
        **base,
        "event_id": f"{run_id}-lat-{i}",
        "timestamp": last_ts + 1000 * (i + 1),
        "bench_sent_ns": sent_ns,
    }


def train_bench_bundle(models_root: Path, customers: int = 2000, seed: int = 0) -> Path:
    """Train a small bundle on generated history, promote it in ``models_root`` and return its directory."""
    from segstream.models.bundle import promote
    from segstream.trainer.cleaning import clean_transactions
    from segstream.trainer.generate import generate_transactions
    from segstream.trainer.pipeline import TrainOptions, train_bundle

    models_root.mkdir(parents=True, exist_ok=True)
    raw = generate_transactions(customers, 365, seed, dirty_fraction=0.0)
    clean, report = clean_transactions(raw, "bench-training")
    out = models_root / "bench-bundle"
    result = train_bundle(clean, out, options=TrainOptions(seed=seed, k_range=range(2, 7)),
                          cleaning=report.to_dict(), source="segstream bench")  # fmt: skip
    promote(result.bundle_dir, models_root)
    return result.bundle_dir


def use_bundle(bundle_dir: Path, models_root: Path) -> Path:
    """Promote an existing bundle into the bench's own models root (the bundle itself is not copied)."""
    from segstream.models.bundle import promote

    models_root.mkdir(parents=True, exist_ok=True)
    promote(Path(bundle_dir), models_root)
    return Path(bundle_dir).resolve()


def time_training(events: int, work_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Generate about ``events`` transactions, clean them and train a bundle; seconds per step.

    The trainer's own per-stage timings come back under ``stages``. The bundle is written under
    ``work_dir`` (the caller deletes it).
    """
    import time

    from segstream.trainer.cleaning import clean_transactions
    from segstream.trainer.generate import generate_transactions
    from segstream.trainer.pipeline import TrainOptions, train_bundle

    customers = max(100, round(events / _ROWS_PER_CUSTOMER_YEAR))
    t0 = time.perf_counter()
    raw = generate_transactions(customers, 365, seed, dirty_fraction=0.0)
    t1 = time.perf_counter()
    clean, report = clean_transactions(raw, "bench-train")
    t2 = time.perf_counter()
    result = train_bundle(clean, work_dir / "train-timing", options=TrainOptions(seed=seed),
                          cleaning=report.to_dict(), source="segstream bench")  # fmt: skip
    t3 = time.perf_counter()
    return {"rows": len(clean), "customers": customers, "generate_seconds": t1 - t0, "clean_seconds": t2 - t1,
            "train_seconds": t3 - t2, "stages": dict(result.timings)}  # fmt: skip
