"""The naive worker, kept as the benchmark's baseline: what the worker would be without micro-batches.

One event at a time: parse it, then several awaited Redis calls (dedupe ``SET NX``, ``HGETALL`` the
customer, ``HSET`` the folded state back, ``GET``/``SET`` the watermark, ``HGET``/``HSET`` the segment),
features from the shared core for one row, scikit-learn ``predict`` on that one row (scaler -> PCA ->
K-Means, with sklearn's per-call validation), and a faust send per output (not awaited until delivery,
as ``topic.send`` does). Same faust settings as the worker (:mod:`segstream.bench.faustapp`).

Run as ``python -m segstream.bench.baseline --group G --expect N --result FILE [--budget-s S]`` with the worker's
``SEGSTREAM_*`` environment; the Redis key prefix is the configured one plus ``:naive``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from segstream.bench.faustapp import Counter, app_kwargs, finish, prepare_process, process_arguments, run_app
from segstream.models.customer_state import CustomerState, aggregates_matrix
from segstream.models.errors import EventValidationError
from segstream.models.events import parse_event
from segstream.models.features import features_from_aggregates
from segstream.models.scoring import signed_log1p
from segstream.settings import Settings

_SCALAR_FIELDS = ("first_ts", "last_ts", "first_purchase_ts", "last_purchase_ts", "purchases", "gross_cents",
                  "net_cents", "returns", "returns_cents")  # fmt: skip


class SklearnSegments:
    """Segment ids through the fitted scikit-learn objects of a bundle's ``segmentation`` artifact."""

    def __init__(self, segmentation: Any) -> None:
        """Keep the trainer's fitted scaler, PCA and K-Means and the stable-id mapping."""
        self.scaler = segmentation.scaler
        self.pca = segmentation.pca
        self.kmeans = segmentation.kmeans
        self.columns = segmentation.scorer.columns
        self.label_to_id = segmentation.scorer.label_to_id

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Segment ids of full feature rows, computed by scikit-learn."""
        sub = signed_log1p(np.ascontiguousarray(np.asarray(x, dtype=np.float64)[:, self.columns]))
        labels = self.kmeans.predict(self.pca.transform(self.scaler.transform(sub)))
        return self.label_to_id[labels]


def load_sklearn_segments(bundle_dir: Path) -> SklearnSegments:
    """The sklearn segmentation of a bundle (unpickles the trainer's ``segmentation`` artifact)."""
    from segstream.models.bundle import load_bundle

    return SklearnSegments(load_bundle(Path(bundle_dir), only=["segmentation"]).artifact("segmentation"))


def state_from_hash(h: dict[bytes, bytes]) -> CustomerState:
    """A customer's state from the naive layout (one field per aggregate, day buckets as JSON)."""
    state = CustomerState()
    if not h:
        return state
    for name in _SCALAR_FIELDS:
        setattr(state, name, int(h[name.encode()]))
    state.days = {int(d): v for d, v in json.loads(h[b"days"]).items()}
    return state


def state_to_hash(state: CustomerState) -> dict[str, str]:
    """The naive layout of a state (event ids are deduplicated by separate keys)."""
    out = {name: str(getattr(state, name)) for name in _SCALAR_FIELDS}
    out["days"] = json.dumps(state.days)
    return out


class NaiveProcessor:
    """Processes one raw message at a time with awaited Redis calls (the slow path, on purpose)."""

    def __init__(self, redis: Any, prefix: str, model: SklearnSegments, send: Any) -> None:
        self.redis, self.prefix, self.model, self.send = redis, prefix, model, send

    async def process(self, raw: bytes) -> str:
        """Process one message; returns ``scored``, ``duplicate`` or ``dead``."""
        try:
            event = parse_event(raw)
        except EventValidationError:
            return "dead"
        r, p = self.redis, self.prefix
        if not await r.set(f"{p}:e:{event.event_id}", b"1", nx=True, ex=7 * 24 * 3600):
            return "duplicate"
        key = f"{p}:c:{event.customer_id}"
        state = state_from_hash(await r.hgetall(key))
        state.add(event.event_id, event.ts_ms, event.amount_cents)
        state.seen_event_ids.clear()
        await r.hset(key, mapping=state_to_hash(state))
        watermark = max(int(await r.get(f"{p}:wm") or 0), event.ts_ms)
        await r.set(f"{p}:wm", watermark)
        x = features_from_aggregates(aggregates_matrix([state.aggregates(watermark)]), watermark)
        segment = int(self.model.predict(x)[0])
        previous = await r.hget(key, "segment")
        await r.hset(key, "segment", segment)
        out = {**event.payload, "segment": segment}
        await self.send("scored", event.customer_id.encode(), json.dumps(out).encode())
        if previous is None or int(previous) != segment:
            change = {"customer_id": event.customer_id, "segment": segment, "event_id": event.event_id}
            await self.send("changes", event.customer_id.encode(), json.dumps(change).encode())
        return "scored"


def build_app(
    settings: Settings, group: str, expect: int, result: Path, loop_kind: str, budget_s: float | None = None
) -> Any:
    """The naive app: consumes ``transactions``, writes ``<scored>.naive`` and ``<changes>.naive``."""
    import faust

    from segstream.models.bundle import resolve_current
    from segstream.redis_clients import async_client

    app = faust.App(group, datadir=str(result.parent / f"faust-{group}"), **app_kwargs(settings))
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(settings.topics.transactions, **raw)
    topics = {"scored": app.topic(settings.topics.scored + ".naive", **raw),
              "changes": app.topic(settings.topics.segment_changes + ".naive", **raw)}  # fmt: skip
    model = load_sklearn_segments(resolve_current(settings.models.root))
    # Every naive call names one key, so it runs on a Redis Cluster as well (each key on its own node).
    client = async_client(settings.redis.url, **settings.redis.client_kwargs())

    async def send(kind: str, key: bytes, value: bytes) -> None:
        await topics[kind].send(key=key, value=value)

    processor = NaiveProcessor(client, settings.redis.key_prefix + ":naive", model, send)
    counter = Counter(expect, budget_s)

    @app.agent(source, name="bench-naive")
    async def naive(stream: Any) -> None:
        async for value in stream:
            await processor.process(value)
            if counter.add(1):
                finish(counter, result, {"loop": loop_kind, "redis_calls_per_event": 7})

    return app


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build the naive app and run it until ``--expect`` events were processed."""
    parser = process_arguments(__doc__)
    parser.add_argument("--budget-s", type=float, default=None, help="Stop this long after the first event.")
    args = parser.parse_args(argv)
    settings, loop_kind = prepare_process(args)
    run_app(build_app(settings, args.group, args.expect, args.result, loop_kind, args.budget_s))


if __name__ == "__main__":
    main()
