"""A batch folded into one customer's stored hash, in the worker (SEGSTREAM_REDIS_FOLD=worker; layout v2).

The Lua fold (the default) costs Redis ~58 us per event in the store-only bench, most of it interpreting Lua
rather than running the commands Lua calls. With this one the worker parses the customer's hash
once (:func:`parse_hash`), folds each batch into the parsed form (:func:`fold`) and Redis only commits the
result with a check that nothing else folded into it meanwhile (:data:`segstream.streams.state.lua.COMMIT`).
The parsed form is what the store keeps between batches (:class:`FoldCache`), so a customer seen again is
neither read whole from Redis nor parsed again. The arithmetic is :meth:`CustomerState.add` and
:meth:`CustomerState.aggregates` on the hash's fields, and a hypothesis test holds the two equal.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from segstream.models.customer_state import BUCKET_RETENTION_DAYS
from segstream.models.features import DAY_MS, NO_TIMESTAMP, WINDOWS_DAYS

# The window-sum cache the Lua fold keeps (w1..w6 as of day wd, valid while wc = p + r). This fold does not
# keep it: a hash that has it loses it on its next write here (the Lua fold rebuilds it when it sees wc stale).
assert len(WINDOWS_DAYS) == 3 and list(WINDOWS_DAYS) == sorted(WINDOWS_DAYS)  # the unrolled sums below
_LUA_CACHE_FIELDS = frozenset({b"wd", b"wc", *(f"w{k}".encode() for k in range(1, 2 * len(WINDOWS_DAYS) + 1))})
_D, _Q, _COLON = ord("d"), ord("q"), ord(":")
_SCALARS = ("lt", "ft", "fp", "lp", "p", "g", "n", "r", "rc")
_NO_DAY = 1 << 62  # the "earliest day" of no buckets: later than any horizon


@dataclass(slots=True)
class StoredFold:
    """A customer's fold fields as stored, parsed.

    Attributes:
        scalars: lt ft fp lp p g n r rc (NO_TIMESTAMP or 0 where absent).
        present: Whether the hash holds a fold at all (``lt`` is stored).
        net: Net cents per UTC day (the ``d:<day>`` buckets).
        qty: Purchases per UTC day (the ``q:<day>`` buckets).
        version: ``p`` and ``r`` as stored (``""`` where absent): a commit goes ahead only if they still hold.
            p + r counts the events folded in, so every fold changes one of them.
        legacy: Fields of the old Lua cache still in the hash, dropped on the next write.
        oldest: The earliest day a bucket holds (:data:`_NO_DAY` with none; None: not known, as for a hash just
            read). Buckets are pruned only once the horizon reaches it, so most folds never look for stale days.
    """

    scalars: tuple[int, int, int, int, int, int, int, int, int]
    present: bool
    net: dict[int, int]
    qty: dict[int, int]
    version: tuple[str, str]
    legacy: list[bytes]
    oldest: int | None = field(default=None, compare=False)


@dataclass(slots=True)
class FoldedCustomer:
    """One customer after a batch: the reply row and what to write back.

    Attributes:
        row: The aggregates in :data:`~segstream.models.features.AGGREGATE_FIELDS` order, as of the batch.
        expected: The (p, r) strings the fold started from; the commit checks them.
        writes: ``[field, value, ...]`` for one HSET (empty when nothing changed).
        deletes: Fields to HDEL: day buckets past the retention horizon and the old Lua cache.
        state: The parsed hash once the writes and deletes are applied (what to keep for the next batch).
    """

    row: list[int]
    expected: tuple[str, str]
    writes: list[str | int]
    deletes: list[bytes]
    state: StoredFold


def _int(value: bytes | None, default: int) -> int:
    return default if value is None else int(value)


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode()


def parse_hash(stored: Mapping[bytes, bytes]) -> StoredFold:
    """Parse a customer hash as HGETALL returns it (bytes field names; empty for a new customer)."""
    get = stored.get
    raw_lt = get(b"lt")
    scalars = (
        _int(raw_lt, NO_TIMESTAMP), _int(get(b"ft"), NO_TIMESTAMP), _int(get(b"fp"), NO_TIMESTAMP),
        _int(get(b"lp"), NO_TIMESTAMP), _int(get(b"p"), 0), _int(get(b"g"), 0), _int(get(b"n"), 0),
        _int(get(b"r"), 0), _int(get(b"rc"), 0),
    )  # fmt: skip
    net: dict[int, int] = {}
    qty: dict[int, int] = {}
    legacy: list[bytes] = []
    for name, value in stored.items():
        # byte compares, not a split per field: this loop visits every stored day bucket
        if len(name) > 2 and name[1] == _COLON:
            kind = name[0]
            if kind == _D:
                net[int(name[2:])] = int(value)
            elif kind == _Q:
                qty[int(name[2:])] = int(value)
        elif name in _LUA_CACHE_FIELDS:
            legacy.append(name)
    return StoredFold(scalars, raw_lt is not None, net, qty, (_text(get(b"p")), _text(get(b"r"))), legacy)


def fold(state: StoredFold, events: Sequence[tuple[int, int]], as_of_ms: int) -> FoldedCustomer:
    """Fold ``events`` ((ts_ms, cents) of new events, in order) into a parsed customer hash.

    ``state`` is consumed: its day dictionaries become the returned state's (a fold whose commit is lost is
    thrown away with them, and the customer is read again).

    Args:
        state: The customer's stored fold, parsed.
        events: The events to add; events already folded in (their marker says so) are not among them.
        as_of_ms: The batch's as-of time: the window sums of the reply are as of its UTC day.
    """
    old = state.scalars
    lt, ft, fp, lp, p, g, n, r, rc = old
    is_new = not state.present
    present = state.present or bool(events)
    new_net: dict[int, int] = {}
    new_qty: dict[int, int] = {}
    for ts, cents in events:
        if is_new or ts < ft:
            ft = ts
        if ts > lt:
            lt = ts
        is_new = False
        n += cents
        day = ts // DAY_MS
        new_net[day] = new_net.get(day, 0) + cents
        if cents >= 0:
            p += 1
            g += cents
            if fp == NO_TIMESTAMP or ts < fp:
                fp = ts
            if ts > lp:
                lp = ts
            new_qty[day] = new_qty.get(day, 0) + 1
        else:
            r += 1
            rc -= cents
    net, qty = state.net, state.qty
    writes: list[str | int] = []
    deletes: list[bytes] = list(state.legacy) if events else []
    if events:
        if not state.present:
            writes += ("lt", lt, "ft", ft, "p", p, "g", g, "n", n, "r", r, "rc", rc)
            if fp != NO_TIMESTAMP:
                writes += ("fp", fp, "lp", lp)
        else:
            for name, before, after in zip(_SCALARS, old, (lt, ft, fp, lp, p, g, n, r, rc), strict=True):
                if after != before:
                    writes += (name, after)
    # Buckets at or below the horizon are out of every window as of any T at or after the latest event: they
    # are deleted, and a new event on such a day is never written.
    oldest = state.oldest
    if oldest is None:
        oldest = min(min(net, default=_NO_DAY), min(qty, default=_NO_DAY))
    horizon = lt // DAY_MS - BUCKET_RETENTION_DAYS if present else None
    for buckets, new, prefix in ((net, new_net, "d:"), (qty, new_qty, "q:")):
        for day, v in new.items():
            if horizon is not None and day <= horizon:
                continue
            total = buckets[day] = buckets.get(day, 0) + v
            writes += (f"{prefix}{day}", total)
            if day < oldest:
                oldest = day
    if horizon is not None and oldest <= horizon:
        for buckets, prefix in ((net, "d:"), (qty, "q:")):
            gone = [day for day in buckets if day <= horizon]
            for day in gone:
                del buckets[day]
                deletes.append(f"{prefix}{day}".encode())
        oldest = min(min(net, default=_NO_DAY), min(qty, default=_NO_DAY))
    as_of_day = as_of_ms // DAY_MS
    low_short, low_mid, low_long = (as_of_day - w for w in WINDOWS_DAYS)
    sums = []
    for buckets in (net, qty):
        short = mid = 0
        if oldest > low_long:  # every bucket is in the longest window (the usual case): C sums it
            long = sum(buckets.values())
            for day, v in buckets.items():
                if day > low_mid:
                    mid += v
                    if day > low_short:
                        short += v
        else:
            long = 0
            for day, v in buckets.items():
                if day > low_long:
                    long += v
                    if day > low_mid:
                        mid += v
                        if day > low_short:
                            short += v
        sums += (short, mid, long)
    scalars = (lt, ft, fp, lp, p, g, n, r, rc)
    version = (str(p), str(r)) if events else state.version
    after = StoredFold(scalars, present, net, qty, version, [] if events else state.legacy, oldest)
    return FoldedCustomer([ft, lt, fp, lp, p, g, n, r, rc, *sums], state.version, writes, deletes, after)


def fold_hash(stored: Mapping[bytes, bytes], events: Sequence[tuple[int, int]], as_of_ms: int) -> FoldedCustomer:
    """:func:`fold` on a hash as HGETALL returns it."""
    return fold(parse_hash(stored), events, as_of_ms)


class FoldCache:
    """The parsed fold of the customers this worker folded lately, least recently used first out.

    With one writer per customer (the partition's owner) an entry stays exactly what Redis holds, so a
    customer seen again is not read before its fold at all: the commit checks the version and answers the
    segment record. An entry whose version no longer matches Redis (another worker folded into it, as after
    a rebalance) makes the commit refuse; its customers are dropped from here and read whole again.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, StoredFold] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> StoredFold | None:
        """The cached fold of a customer key, marked as just used (None when absent)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, state: StoredFold) -> None:
        """Remember a customer's fold as committed, evicting the least recently used beyond capacity."""
        if self.capacity <= 0:
            return
        self._entries[key] = state
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        """Forget a customer (its stored hash moved under this worker)."""
        self._entries.pop(key, None)
