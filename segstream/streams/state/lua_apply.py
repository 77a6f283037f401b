"""The fold in Redis (``SEGSTREAM_REDIS_FOLD=redis``, the default): one :data:`~segstream.streams.state.lua.APPLY`
call per batch (on Redis Cluster one per shard) folds the events in, inside Redis.

Against the fold in the worker (:mod:`segstream.streams.state.hash_fold`) it costs Redis ~40 us more per event
and the worker ~30 us less (measured with ``segstream bench`` and ``bench-store``, docs/performance.md): on a
box where the worker is the bottleneck and Redis has a core of its own, this is the faster of the two; where
one Redis serves many workers, the worker's fold lets it serve more. Both keep the same hash, so workers may
switch between them (or differ) at any time: each commit of the worker's fold checks the customer's event
count, which this script moves too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from segstream.models.customer_state import AggregateRow
from segstream.models.events import Event
from segstream.models.features import AGGREGATE_FIELDS
from segstream.models.preferences import event_split
from segstream.models.state_keys import categories_key, customer_key, event_key
from segstream.streams.state.base import CustomerView, Delivery, SegmentRecord

_DELIVERIES: dict[int, Delivery] = {d.value: d for d in Delivery}  # what Lua's 1, 2, 3 mean


def apply_calls(
    store: Any, groups: Sequence[Sequence[tuple[int, list[Event]]]], as_of: int, with_categories: bool
) -> tuple[list[Any], list[dict[int, str]], list[list[Event]]]:
    """The APPLY calls for a batch (one per group of shards), with what is needed to read their replies."""
    calls, customers_of_call, events_of_call = [], [], []
    root_of, ttl = store.keys.shard_roots, store.dedupe_ttl_s
    for group in groups:
        keys = store.new_keys()
        customer_at: dict[int, str] = {}
        flat: list[Any] = []
        ordered: list[Event] = []
        for shard, shard_events in group:
            root = root_of[shard]
            wi = keys(store.keys.watermark(shard))
            for e in shard_events:
                ci = keys(customer_key(root, e.customer_id))
                customer_at[ci] = e.customer_id
                payload = e.payload
                split = event_split(payload, e.amount_cents) if "lines" in payload or "category" in payload else ()
                ki = keys(categories_key(root, e.customer_id)) if split or with_categories else 0
                flat += (wi, ci, keys(event_key(root, e.event_id)), e.ts_ms, e.amount_cents, ki,
                         [v for pair in split for v in pair] if split else 0)  # fmt: skip
            ordered += shard_events
        calls.append((store.apply_script, keys.keys, [ttl, as_of, orjson.dumps(flat), "1" if with_categories else "0"]))
        customers_of_call.append(customer_at)
        events_of_call.append(ordered)
    return calls, customers_of_call, events_of_call


def read_replies(
    replies: Sequence[Any], customers_of_call: Sequence[Mapping[int, str]], events_of_call: Sequence[list[Event]]
) -> tuple[dict[str, Delivery], dict[str, CustomerView], int]:
    """Deliveries, views and the largest stored watermark from the APPLY replies."""
    delivered: dict[str, Delivery] = {}
    views: dict[str, CustomerView] = {}
    stored_wm = 0
    for (wm, deliveries, rows), cids, ordered in zip(replies, customers_of_call, events_of_call, strict=True):
        stored_wm = max(stored_wm, int(wm))
        for e, d in zip(ordered, deliveries, strict=True):
            # A dict lookup, not Delivery(d): the enum's call was ~0.4 us per event.
            delivered[e.event_id] = _DELIVERIES[int(d)]
        views.update(views_of_rows(rows, cids))
    return delivered, views, stored_wm


def views_of_rows(flat: list[Any], customer_at: Mapping[int, str]) -> dict[str, CustomerView]:
    """Customer views from a script's reply rows ({customer index, row, ...}; see lua._HELPERS.aggregate_row)."""
    views: dict[str, CustomerView] = {}
    n = len(AGGREGATE_FIELDS)
    for i in range(0, len(flat), 2):
        cid, row = customer_at[int(flat[i])], flat[i + 1]
        # Lua integers arrive as ints already; the segment fields are strings, and int() takes bytes too.
        categories = None
        if len(row) > n + 6:
            pairs = row[n + 6]
            categories = {text(pairs[j]): int(pairs[j + 1]) for j in range(0, len(pairs), 2)}
        record = segment_record(row[n : n + 6])
        views[cid] = CustomerView(cid, AggregateRow(row[:n]), record, categories)
    return views


def segment_record(fields: Sequence[bytes | str | None]) -> SegmentRecord:
    """The stored segment record from its fields sg sp sn sv sa sd, as the scripts return them (each empty or
    None where absent)."""
    sg, sp, sn, sv, sa, sd = fields
    return SegmentRecord(
        int(sg) if sg else None,
        int(sp) if sp else None,
        int(sn) if sn else 0,
        text(sv) if sv is not None else "",
        int(sa) if sa else 0,
        int(sd) if sd else 0,
    )


def text(value: bytes | str) -> str:
    """A reply value as text (redis-py answers bytes, a Lua string may arrive as str)."""
    return value.decode() if isinstance(value, bytes) else value
