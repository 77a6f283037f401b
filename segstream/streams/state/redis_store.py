"""The Redis state store: a batch is one Lua fold (or a read, a fold in the worker and a Lua commit) and one
Lua finalize; on Redis Cluster, one call of each per shard.

Where the fold runs is a setting (``SEGSTREAM_REDIS_FOLD``). By default (``redis``) one Lua APPLY call folds
a batch inside Redis (:mod:`segstream.streams.state.lua_apply`). With ``worker``, apply reads the batch's
markers and the customers it does not keep with plain commands, folds the events in Python
(:mod:`segstream.streams.state.hash_fold`) and commits with a script that writes only if no other writer
folded into those customers meanwhile (optimistic concurrency on the customer's event count), so state
stays exactly-once with several workers and through rebalances; a customer whose parsed fold the worker
keeps is not read before its fold: the commit checks it and answers the customer's segment record.

A shard's keys share one hash slot (see :mod:`segstream.models.state_keys`) and every script declares all
the keys it touches, so the same scripts run on one Redis (all of a batch's shards in one call: a single
server has no slot rule) and on Redis Cluster (one call per shard, each to the master of its slot,
concurrently).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from segstream.models.customer_state import AggregateRow
from segstream.models.events import Event
from segstream.models.preferences import add_split, event_split
from segstream.models.state_keys import (
    DEFAULT_SHARDS,
    KEY_FORMAT_VERSION,
    KeySpace,
    categories_key,
    customer_key,
    event_key,
    history_key,
    merge_daily_sales,
)
from segstream.redis_clients import async_client
from segstream.streams.state import lua
from segstream.streams.state.base import (
    DEFAULT_DEDUPE_TTL_S,
    HISTORY_LENGTH,
    ApplyResult,
    CampaignMemory,
    CustomerView,
    Delivery,
    Finalization,
    StateStoreError,
)
from segstream.streams.state.dedupe import mark_repeats_in_batch
from segstream.streams.state.hash_fold import FoldCache, StoredFold, parse_hash
from segstream.streams.state.hash_fold import fold as fold_state
from segstream.streams.state.lua_apply import apply_calls, read_replies, segment_record, views_of_rows
from segstream.streams.state.lua_apply import text as _text

DEFAULT_SWEEP_LEASE_MS = 30_000
# How often apply reads and folds again when another writer folded into its customers first.
COMMIT_ATTEMPTS = 10
# Customers whose parsed fold the store keeps between batches (see hash_fold.FoldCache): ~3.4 KB each.
DEFAULT_FOLD_CACHE = 50_000
# Where a batch is folded into the customer hashes: "redis" (the APPLY script, see lua_apply) or "worker"
# (hash_fold, then the COMMIT script). Both keep the same hashes.
FOLDS = ("redis", "worker")
DEFAULT_FOLD = "redis"


class _Fold:
    """One call's share of an apply: what it found per event, its customers' rows and the COMMIT call."""

    __slots__ = ("call", "committed", "delivered", "rows", "stored_wm")

    def __init__(self) -> None:
        self.call: tuple[list[str], list[Any]] = ([], [])
        # customer key -> its fold once this call commits (to keep; or to forget when the call is lost)
        self.committed: dict[str, StoredFold] = {}
        self.delivered: dict[str, Delivery] = {}
        # (customer, aggregate row or None, categories) in the order of the call's customers
        self.rows: list[tuple[str, list[int] | None, dict[str, int] | None]] = []
        self.stored_wm = 0


class _Script:
    """A Lua script run by SHA, loaded again on NOSCRIPT (a restarted server or a promoted replica)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


class _Keys:
    """The KEYS of one script call: each key once, addressed by its 1-based index."""

    def __init__(self, *fixed: str) -> None:
        self.keys: list[str] = list(fixed)
        self._index: dict[str, int] = {k: i + 1 for i, k in enumerate(fixed)}

    def __call__(self, key: str) -> int:
        index = self._index.get(key)
        if index is None:
            self.keys.append(key)
            index = self._index[key] = len(self.keys)
        return index


class _FinalizePart:
    """One shard's share of a finalize, indexing into KEYS it may share with other shards (one Redis)."""

    __slots__ = ("caps", "changes", "cooldowns", "done", "due", "due_index", "key", "keys", "sales", "sales_index",
                 "segments")  # fmt: skip

    def __init__(self, keys: _Keys, sales_key: str, due_key: str) -> None:
        self.keys = keys
        self.key = keys.__call__
        self.sales_index, self.due_index = self.key(sales_key), self.key(due_key)
        self.segments: list[list[Any]] = []
        self.changes: list[list[Any]] = []
        self.sales: list[list[Any]] = []
        self.done: list[int] = []
        self.due: list[list[Any]] = []
        self.cooldowns: list[list[Any]] = []
        self.caps: list[list[Any]] = []


def _finalize_payload(parts: Sequence[_FinalizePart]) -> bytes:
    return orjson.dumps({
        name: [item for part in parts for item in getattr(part, name)]
        for name in ("segments", "changes", "sales", "done", "due", "cooldowns", "caps")
    })  # fmt: skip


class RedisStateStore:
    """:class:`~segstream.streams.state.base.StateStore` on a real Redis server or a Redis Cluster."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        prefix: str = "segstream",
        dedupe_ttl_s: int = DEFAULT_DEDUPE_TTL_S,
        shards: int = DEFAULT_SHARDS,
        sweep_lease_ms: int = DEFAULT_SWEEP_LEASE_MS,
        fold_cache: int = DEFAULT_FOLD_CACHE,
        fold: str = DEFAULT_FOLD,
    ) -> None:
        if fold not in FOLDS:
            raise StateStoreError(f"unknown fold {fold!r}: use one of {', '.join(FOLDS)}")
        self.fold = fold
        self._redis = client
        self._cluster = isinstance(client, RedisCluster)
        self.keys = KeySpace(prefix, shards)
        self.dedupe_ttl_s = dedupe_ttl_s
        self._lease_ms = sweep_lease_ms
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.apply_script = _Script(lua.APPLY)
        self._commit = _Script(lua.COMMIT)
        self._view = _Script(lua.VIEW)
        self._finalize = _Script(lua.FINALIZE)
        self._claim = _Script(lua.CLAIM)
        self._checked = False
        self._folds = FoldCache(fold_cache)
        # The largest event time this store has seen or been told of by a shard: the as-of time of its next
        # batch (with one worker exactly the largest event time folded in, as v1's global watermark was).
        self._known_wm = 0
        # event id -> customer id of events applied but not yet finalized: finalize marks them done in the
        # shard of their customer.
        self._customer_of: dict[str, str] = {}
        self._finalized: dict[str, str] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "segstream",
        dedupe_ttl_s: int = DEFAULT_DEDUPE_TTL_S,
        shards: int = DEFAULT_SHARDS,
        fold_cache: int = DEFAULT_FOLD_CACHE,
        fold: str = DEFAULT_FOLD,
        **client_kwargs: Any,
    ) -> RedisStateStore:
        """Connect lazily to ``redis://``, ``rediss://`` or ``redis+cluster://`` (auth, TLS in ``client_kwargs``)."""
        client = async_client(url, **client_kwargs)
        return cls(client, prefix=prefix, dedupe_ttl_s=dedupe_ttl_s, shards=shards, fold_cache=fold_cache,
                   fold=fold)  # fmt: skip

    @staticmethod
    def new_keys() -> _Keys:
        """An empty KEYS list for one script call."""
        return _Keys()

    # -- running scripts ---------------------------------------------------------------------------------

    async def _check_layout(self) -> None:
        """Record the layout on first use, or refuse a store written with another shard count."""
        if self._checked:
            return
        meta = self.keys.meta
        await self._redis.hsetnx(meta, "layout", str(KEY_FORMAT_VERSION))
        await self._redis.hsetnx(meta, "shards", str(self.keys.shards))
        stored = await self._redis.hget(meta, "shards")
        if stored is not None and int(stored) != self.keys.shards:
            raise StateStoreError(
                f"the state under {self.keys.root!r} has {int(stored)} shards, this worker is set to "
                f"{self.keys.shards}: set SEGSTREAM_REDIS_SHARDS={int(stored)}"
            )
        await self.watermark()  # a restarted worker scores as of the stored watermark, not its first batch
        self._checked = True

    async def _run(self, calls: Sequence[tuple[_Script, list[str], list[Any]]]) -> list[Any]:
        """Run script calls (each with its keys in one slot) and return their replies in order."""
        await self._check_layout()
        if not calls:
            return []
        if self._cluster:
            with _topology_change_as_connection_error():
                return list(await asyncio.gather(*(self._run_one(s, k, a) for s, k, a in calls)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                script, keys, args = calls[i]
                replies[i] = await self._run_one(script, keys, args)
            elif isinstance(reply, Exception):
                raise reply
        return list(replies)

    async def _run_one(self, script: _Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # EVAL caches the script on the node that runs it (SCRIPT LOAD would go elsewhere on a cluster).
            return await self._redis.eval(script.source, len(keys), *keys, *args)

    # -- the batch path ----------------------------------------------------------------------------------

    async def apply(self, events: Sequence[Event], with_categories: bool = False) -> ApplyResult:
        """Fold a batch in; see :class:`~segstream.streams.state.base.StateStore`.

        With the fold in Redis, one APPLY call (per shard on a cluster). With the fold in the worker: one
        pipelined read (watermarks, markers, the customers whose fold is not kept), the fold in Python,
        then one COMMIT per call that writes only if no other writer folded into these customers meanwhile
        and answers their segment records; a call that lost that race reads and folds again.
        """
        await self._check_layout()
        unique, repeats = mark_repeats_in_batch(events)
        as_of = max([self._known_wm, *(e.ts_ms for e in unique)])
        by_shard: dict[int, list[Event]] = {}
        shard_of = self.keys.shard_of
        for event in unique:
            by_shard.setdefault(shard_of(event.customer_id), []).append(event)
            self._customer_of[event.event_id] = event.customer_id
        # A cluster takes one call per shard (its keys share a slot); one Redis takes the whole batch in one.
        pending = [[item] for item in by_shard.items()] if self._cluster else [list(by_shard.items())]
        if self.fold == "redis":
            calls, customers_of_call, events_of_call = apply_calls(self, pending, as_of, with_categories)
            delivered, views, stored_wm = read_replies(await self._run(calls), customers_of_call, events_of_call)
        else:
            delivered, views, stored_wm = await self._fold_and_commit(pending, as_of, with_categories)
        self._known_wm = max(as_of, stored_wm)
        merged = [Delivery.DONE if i in repeats else delivered[e.event_id] for i, e in enumerate(events)]
        return ApplyResult(merged, as_of, views)

    async def _fold_and_commit(
        self, pending: list[list[tuple[int, list[Event]]]], as_of: int, with_categories: bool
    ) -> tuple[dict[str, Delivery], dict[str, CustomerView], int]:
        """The worker's fold: read, fold in Python, COMMIT; the calls that lost a race to another writer again.

        Returns what each event was, the customers' views and the largest watermark a shard had stored.
        """
        delivered: dict[str, Delivery] = {}
        views: dict[str, CustomerView] = {}
        stored_wm = 0
        for _ in range(COMMIT_ATTEMPTS):
            reads = await self._read(pending, with_categories)
            folds = [self._fold(g, read, as_of) for g, read in zip(pending, reads, strict=True)]
            replies = await self._run([(self._commit, *fold.call) for fold in folds])
            lost = []
            for group, fold, reply in zip(pending, folds, replies, strict=True):
                if not isinstance(reply, list):  # 0: another writer folded into one of these customers first
                    for key in fold.committed:
                        self._folds.drop(key)
                    lost.append(group)
                    continue
                for key, state in fold.committed.items():
                    self._folds.put(key, state)
                stored_wm = max(stored_wm, fold.stored_wm)
                delivered.update(fold.delivered)
                for (cid, row, categories), record in zip(fold.rows, reply[1], strict=True):
                    if row is not None:  # record: p r sg sp sn sv sa sd as they are now
                        views[cid] = CustomerView(cid, AggregateRow(row), segment_record(record[2:]), categories)
            if not lost:
                break
            pending = lost
        else:
            raise StateStoreError(
                f"customers of this batch kept changing under this worker ({COMMIT_ATTEMPTS} tries): another "
                "worker is folding the same customers (a rebalance that does not settle?)"
            )
        return delivered, views, stored_wm

    async def _read(self, groups: Sequence[Sequence[tuple[int, list[Event]]]], with_categories: bool) -> list[Any]:
        """Per group: its shards' watermarks, its events' markers, the customers it has no fold of (and categories).

        Plain commands, pipelined: one MGET per group (watermarks and markers share its slot on a cluster)
        and one HGETALL per customer whose fold this store does not keep; a kept fold is checked against
        Redis by the commit itself. The same reads done by a Lua script cost Redis ~18 us more per event (Lua
        builds a table of every field it passes through); one GET per marker cost the worker ~15 us more.
        """
        keys, roots = self.keys, self.keys.shard_roots
        layouts, names_of = [], []
        async with self._redis.pipeline(transaction=False) as pipe:
            for group in groups:
                names = [keys.watermark(shard) for shard, _ in group]
                key_of: dict[str, str] = {}  # customer -> its hash key, in first-seen order
                root_of: dict[str, str] = {}  # customer -> the root of its shard
                for shard, shard_events in group:
                    root = roots[shard]
                    for e in shard_events:
                        names.append(event_key(root, e.event_id))
                        if e.customer_id not in key_of:
                            key_of[e.customer_id] = customer_key(root, e.customer_id)
                            root_of[e.customer_id] = root
                # execute_command: the cluster pipeline refuses its mget() helper, but routes a one-slot MGET
                pipe.execute_command("MGET", *names)
                names_of.append(names)
                kept, missing = {}, []
                for cid, key in key_of.items():
                    state = self._folds.get(key)
                    if state is None:
                        missing.append(cid)
                        pipe.hgetall(key)
                    else:
                        kept[cid] = state
                if with_categories:
                    for cid in key_of:
                        pipe.hgetall(categories_key(root_of[cid], cid))
                layouts.append((len(group), key_of, root_of, kept, missing))
            with _topology_change_as_connection_error():
                replies = await pipe.execute()
        out, at = [], 0
        for (shards, key_of, root_of, kept, missing), names in zip(layouts, names_of, strict=True):
            values = replies[at]
            at += 1
            for cid, stored in zip(missing, replies[at : at + len(missing)], strict=True):
                kept[cid] = parse_hash(stored)
            at += len(missing)
            categories = None
            if with_categories:
                categories = dict(zip(key_of, replies[at : at + len(key_of)], strict=True))
                at += len(key_of)
            out.append((values[:shards], values[shards:], names[shards:], key_of, root_of, kept, categories))
        return out

    def _fold(self, group: Sequence[tuple[int, list[Event]]], read: Any, as_of: int) -> _Fold:
        """Fold one call's events into the customers read for it; the COMMIT call that writes the result."""
        wms, markers, marker_keys, key_of, root_of, states, category_hashes = read
        keys = _Keys()
        fold = _Fold()
        stored = [int(v) for v in wms if v]
        fold.stored_wm = max(stored, default=0)
        new_events: dict[str, list[tuple[int, int]]] = {cid: [] for cid in key_of}
        splits: dict[str, dict[str, int]] = {}
        new_markers: list[int] = []
        wm_keys: list[int] = []
        marker_at = iter(zip(markers, marker_keys, strict=True))
        for (shard, shard_events), wm in zip(group, wms, strict=True):
            if not wm or as_of > int(wm):
                wm_keys.append(keys(self.keys.watermark(shard)))
            for e in shard_events:
                marker, marker_key = next(marker_at)
                if not marker:
                    fold.delivered[e.event_id] = Delivery.NEW
                    new_events[e.customer_id].append((e.ts_ms, e.amount_cents))
                    new_markers.append(keys(marker_key))
                    payload = e.payload
                    if "lines" in payload or "category" in payload:
                        split = event_split(payload, e.amount_cents)
                        if split:
                            add_split(splits.setdefault(e.customer_id, {}), split)
                else:
                    # "1": folded by a delivery that crashed before finalize; "2": done
                    fold.delivered[e.event_id] = Delivery.APPLIED if marker in (b"1", "1") else Delivery.DONE
        customers: list[list[Any]] = []
        for cid, key in key_of.items():
            folded = fold_state(states[cid], new_events[cid], as_of)
            fold.committed[key] = folded.state
            # every customer is checked and answers its segment record, written or not
            customers.append([keys(key), *folded.expected, folded.writes, [d.decode() for d in folded.deletes]])
            categories = None
            if category_hashes is not None:
                categories = {_text(k): int(v) for k, v in category_hashes[cid].items()}
                add_split(categories, splits.get(cid, {}).items())
            # None: nothing was ever folded in for it (every event of it was a repeat): no view
            fold.rows.append((cid, folded.row if folded.state.present else None, categories))
        category_adds = [[keys(categories_key(root_of[cid], cid)),
                          [v for pair in add.items() for v in pair]] for cid, add in splits.items()]  # fmt: skip
        payload = orjson.dumps({"c": customers, "m": new_markers, "w": wm_keys, "k": category_adds})
        fold.call = (keys.keys, [self.dedupe_ttl_s, as_of, payload])
        return fold

    async def finalize(self, batch: Finalization) -> None:
        """Write segments, changes and sales, then mark the batch's events done."""
        keys, roots = self.keys, self.keys.shard_roots
        parts: dict[int, _FinalizePart] = {}
        shard_cache: dict[str, int] = {}  # one crc32 per customer and call, not one per key
        shared = None if self._cluster else _Keys()  # one Redis: every shard in one call

        def new_part(shard: int) -> _FinalizePart:
            part = parts[shard] = _FinalizePart(shared or _Keys(), keys.sales(shard), keys.due(shard))
            return part

        def part_of(cid: str) -> tuple[_FinalizePart, str]:
            shard = shard_cache.get(cid)
            if shard is None:
                shard = shard_cache[cid] = keys.shard_of(cid)
            return parts.get(shard) or new_part(shard), roots[shard]

        for cid, r in batch.segments.items():
            part, root = part_of(cid)
            part.segments.append([
                part.key(customer_key(root, cid)), _opt(r.segment), _opt(r.pending), str(r.pending_count),
                r.model_version, str(r.scored_as_of_ms), str(r.pending_since_ms),
            ])  # fmt: skip
        for c in batch.changes:
            part, root = part_of(c.customer_id)
            part.changes.append([part.key(history_key(root, c.customer_id)), orjson.dumps(c.history_entry()).decode()])
        customer = self._customer
        markers: dict[str, tuple[_FinalizePart, int]] = {}  # sales and done name mostly the same events
        for event_id in batch.done_event_ids:
            part, root = part_of(customer(event_id))
            index = part.key(event_key(root, event_id))
            markers[event_id] = (part, index)
            part.done.append(index)
        fields: dict[tuple[int, int], tuple[str, str]] = {}  # (day, segment) -> the two sales fields it adds to
        for event_id, day, segment, cents in batch.sales:
            found = markers.get(event_id)
            if found is None:
                part, root = part_of(customer(event_id))
                found = (part, part.key(event_key(root, event_id)))
            names = fields.get((day, segment))
            if names is None:
                names = fields[(day, segment)] = (f"{day}:total", f"{day}:segment:{segment}")
            found[0].sales.append([found[1], found[0].sales_index, *names, cents])
        for cid, at in batch.next_check_ms.items():
            part = part_of(cid)[0]
            part.due.append([part.due_index, cid, int(at)])
        for (cid, campaign), at in batch.cooldowns.items():
            part, root = part_of(cid)
            part.cooldowns.append([part.key(customer_key(root, cid)), campaign, int(at)])
        for (campaign, day), ids in batch.caps.items():
            per_shard: dict[int, list[str]] = {}
            for trigger_id in ids:
                # A trigger id starts with nothing of its customer: shard the cap set by the trigger id.
                per_shard.setdefault(keys.shard_of(trigger_id), []).append(trigger_id)
            for shard, shard_ids in per_shard.items():
                cap_part = parts.get(shard) or new_part(shard)
                cap_part.caps.append([cap_part.key(keys.cap(shard, campaign, day)), shard_ids])
        if not parts:
            calls = []
        elif shared is None:
            calls = [(self._finalize, p.keys.keys, [self.dedupe_ttl_s, HISTORY_LENGTH, _finalize_payload([p])])
                     for p in parts.values()]  # fmt: skip
        else:
            payload = _finalize_payload(list(parts.values()))
            calls = [(self._finalize, shared.keys, [self.dedupe_ttl_s, HISTORY_LENGTH, payload])]
        await self._run(calls)
        if batch.done_event_ids:
            # Kept for one more finalize, so a finalize retried after it succeeded still finds its shards.
            pop = self._customer_of.pop
            self._finalized = {e: pop(e, None) or customer(e) for e in batch.done_event_ids}

    def _customer(self, event_id: str) -> str:
        cid = self._customer_of.get(event_id) or self._finalized.get(event_id)
        if cid is None:
            raise StateStoreError(f"finalize names event {event_id!r}, which this store did not apply")
        return cid

    # -- reads -------------------------------------------------------------------------------------------

    async def view(self, customer_ids: Sequence[str], as_of_ms: int | None = None) -> dict[str, CustomerView]:
        """Current views of some customers as of T (default: the watermark)."""
        if not customer_ids:
            return {}
        as_of = await self.watermark() if as_of_ms is None else as_of_ms
        by_shard: dict[int, list[str]] = {}
        for cid in dict.fromkeys(customer_ids):
            by_shard.setdefault(self.keys.shard_of(cid), []).append(cid)
        groups = list(by_shard.values()) if self._cluster else [[c for cids in by_shard.values() for c in cids]]
        calls = [(self._view, [*(self.keys.customer(c) for c in cids), *(self.keys.categories(c) for c in cids)],
                  [as_of, len(cids)]) for cids in groups]  # fmt: skip
        views: dict[str, CustomerView] = {}
        for rows, cids in zip(await self._run(calls), groups, strict=True):
            views.update(views_of_rows(rows, dict(enumerate(cids, 1))))
        return views

    async def set_profiles(self, profiles: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Replace customers' profiles (None deletes one): plain SET/DEL, idempotent, the latest call wins."""
        if not profiles:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid, attributes in profiles.items():
                key = self.keys.profile(cid)
                if attributes is None:
                    pipe.delete(key)
                else:
                    pipe.set(key, orjson.dumps(dict(attributes)))
            await pipe.execute()

    async def profiles(self, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored profiles of some customers (those without one are left out)."""
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.get(self.keys.profile(cid))
            values = await pipe.execute()
        return {cid: orjson.loads(v) for cid, v in zip(ids, values, strict=True) if v is not None}

    async def campaign_memory(
        self, customer_ids: Sequence[str], campaigns: Sequence[str], days: Sequence[int]
    ) -> CampaignMemory:
        """When each of these customers last got each campaign, and each campaign's triggers on these days.

        An HMGET of the ``k.<campaign>`` fields per customer and an SCARD per shard and day cap, pipelined.
        """
        memory = CampaignMemory()
        if not customer_ids or not campaigns:
            return memory
        fields = [f"k.{c}" for c in campaigns]
        pairs = [(c, d) for c in campaigns for d in days]
        shards = range(self.keys.shards)
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in customer_ids:
                pipe.hmget(self.keys.customer(cid), fields)
            for campaign, day in pairs:
                for shard in shards:
                    pipe.scard(self.keys.cap(shard, campaign, day))
            replies = await pipe.execute()
        for cid, values in zip(customer_ids, replies, strict=False):
            for campaign, value in zip(campaigns, values, strict=True):
                if value is not None:
                    memory.last_fired_ms[(cid, campaign)] = int(value)
        counts = replies[len(customer_ids) :]
        for i, (campaign, day) in enumerate(pairs):
            count = sum(int(c) for c in counts[i * len(shards) : (i + 1) * len(shards)])
            if count:
                memory.fired_per_day[(campaign, day)] = count
        return memory

    async def _due(self, shards: Sequence[int], as_of_ms: int, limit: int) -> list[str]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.zrangebyscore(self.keys.due(shard), "-inf", as_of_ms, start=0, num=limit, withscores=True)
            replies = await pipe.execute()
        due = sorted((float(at), _text(c)) for reply in replies for c, at in reply)
        return [cid for _, cid in due[:limit]]

    async def due_for_check(self, as_of_ms: int, limit: int) -> list[str]:
        """Customers whose next inactivity check is due, over every shard, earliest first."""
        return await self._due(range(self.keys.shards), as_of_ms, limit)

    async def claim_forecast(self, lease_ms: int) -> bool:
        """Take or renew the forecast lease (the same script as the sweep leases)."""
        reply = await self._run([(self._claim, [self.keys.forecast_lease], [self._owner, int(lease_ms)])])
        return bool(int(reply[0]))

    async def claim_due(self, as_of_ms: int, limit: int) -> list[str]:
        """Due customers of the shards whose sweep lease this store holds (taking free leases first)."""
        shards = range(self.keys.shards)
        calls = [(self._claim, [self.keys.sweep_lease(s)], [self._owner, self._lease_ms]) for s in shards]
        held = [s for s, got in zip(shards, await self._run(calls), strict=True) if int(got)]
        return await self._due(held, as_of_ms, limit) if held else []

    async def watermark(self) -> int:
        """The largest event time folded in so far, over every shard."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                pipe.get(self.keys.watermark(shard))
            values = await pipe.execute()
        wm = max([0, *(int(v) for v in values if v is not None)])
        self._known_wm = max(self._known_wm, wm)
        return wm

    async def daily_sales(self) -> dict[int, dict[str, int]]:
        """Streamed sales in cents per UTC day, summed over the shards."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                pipe.hgetall(self.keys.sales(shard))
            replies = await pipe.execute()
        return merge_daily_sales(replies)

    async def history(self, customer_id: str) -> list[dict[str, object]]:
        """The customer's latest segment changes, newest first."""
        return [json.loads(item) for item in await self._redis.lrange(self.keys.history(customer_id), 0, -1)]

    async def ping(self) -> None:
        """Raise if Redis cannot be reached."""
        await self._redis.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


@contextlib.contextmanager
def _topology_change_as_connection_error() -> Iterator[None]:
    """Report a connection closed by a cluster topology change as the connection error it is.

    redis-py 8.1's asyncio cluster client can hand out a connection that a topology refresh (a failover)
    closed under it ('NoneType' has no 'writelines'). The store's calls are idempotent, so the caller's retry
    runs them again; an AttributeError raised anywhere but inside redis-py stays what it is.
    """
    try:
        yield
    except AttributeError as exc:
        if not _raised_inside_redis_py(exc):
            raise
        raise RedisConnectionError(f"connection closed by a cluster topology change ({exc})") from exc


def _raised_inside_redis_py(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}redis{os.sep}" in tb.tb_frame.f_code.co_filename


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


