"""Test doubles for the worker's own collaborators: a rule-based scorer, a recording producer, bundles."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from segstream.models.bundle import promote, write_bundle_in_root
from segstream.models.features import DAY_MS, FEATURE_NAMES, FEATURE_SPEC
from segstream.models.serving import SERVING, ServingModels
from segstream.streams.bundle_watch import ActiveModel, ModelHolder
from segstream.streams.pipeline import RawRecord

RECENCY = FEATURE_NAMES.index("recency_days")
FREQUENCY = FEATURE_NAMES.index("frequency")
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z

ACTIVE, AT_RISK = 0, 1
NAMES = {ACTIVE: "Active", AT_RISK: "At risk"}


class RecencyScorer:
    """Segment 1 ("At risk") once recency passes ``threshold_days``, else 0 ("Active"); picklable."""

    def __init__(self, threshold_days: float = 60.0, offset: int = 0) -> None:
        self.threshold_days = threshold_days
        self.offset = offset

    def predict_segment(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        return (x[:, RECENCY] > self.threshold_days).astype(np.int64) + self.offset


def serving(scorer: Any = None, names: dict[int, str] | None = None) -> ServingModels:
    return ServingModels(
        segments=scorer or RecencyScorer(),
        tree=None,
        purchase=None,
        names=dict(names or NAMES),
        training_mix={ACTIVE: 0.7, AT_RISK: 0.3},
    )


def active_model(scorer: Any = None, version: str = "v-test") -> ActiveModel:
    return ActiveModel(version, Path("/nonexistent"), serving(scorer))


def holder(scorer: Any = None, version: str = "v-test") -> ModelHolder:
    return ModelHolder(Path("/nonexistent"), active=active_model(scorer, version))


def make_bundle(
    root: Path,
    scorer: Any = None,
    names: dict[int, str] | None = None,
    *,
    do_promote: bool = True,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    path = write_bundle_in_root(
        root, {SERVING: serving(scorer, names)}, feature_spec=FEATURE_SPEC.to_dict(), data_fingerprint={},
        metrics={}, extra_files=extra_files,
    )  # fmt: skip
    if do_promote:
        promote(path, root)
    return path


class FakeProducer:
    """Records every send; deliveries complete at once (or fail ``fail_first`` times)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail_first = fail_first
        self.attempts = 0

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        self.attempts += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_first > 0:
            self.fail_first -= 1
            future.set_exception(RuntimeError("broker said no"))
            return future
        self.sent.append((topic, key, value))
        future.set_result(None)
        return future

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(v) for t, _, v in self.sent if t == topic]


def event(eid: str, cid: str, day: float, amount: float = 10.0, **extra: Any) -> bytes:
    return json.dumps({"event_id": eid, "customer_id": cid, "timestamp": T0 + int(day * DAY_MS), "amount": amount,
                       **extra}).encode()  # fmt: skip


_offset = [0]


def records(*values: bytes | None, topic: str = "transactions", partition: int = 0) -> list[RawRecord]:
    """Raw records with increasing offsets, as the broker would deliver them."""
    out = []
    for value in values:
        _offset[0] += 1
        out.append(RawRecord(value, b"k", topic, partition, _offset[0]))
    return out
