"""The Redis key layout, version 2. Pinned by a golden test: change it only with a new version.

Every key a script touches carries the hash tag of one *shard*, so each script's keys share a Redis Cluster
slot and the same scripts run on one Redis and on a cluster. A customer belongs to shard
``crc32(customer_id) % shards``; the shard count is fixed when the layout is first written (``meta``).

``{prefix}:v2:{<tag>}:c:<customer>``  hash: the fold (ft lt fp lp p g n r rc, day buckets ``d:<day>`` net
                                      cents and ``q:<day>`` purchases), the segment record (sg sp sn sv sa
                                      sd) and the event time each campaign last fired for the customer
                                      (``k.<campaign>``). The Lua fold (SEGSTREAM_REDIS_FOLD=redis) also
                                      keeps its window-sum cache (w1..w6 as of day wd, valid while wc = p + r);
                                      the worker's fold drops it on the customer's next event
``{prefix}:v2:{<tag>}:e:<event_id>``  string with a TTL: "1" applied, "2" done (the dedupe marker; in the
                                      shard of the event's customer)
``{prefix}:v2:{<tag>}:h:<customer>``  list: the latest segment changes as JSON, newest first
``{prefix}:v2:{<tag>}:wm``            string: the largest event time folded into this shard, epoch ms
``{prefix}:v2:{<tag>}:due``           sorted set: customer -> event time of the shard's next inactivity check
``{prefix}:v2:{<tag>}:sweep``         string with a TTL: the worker that holds the shard's sweep lease
``{prefix}:v2:{<tag>}:sales``         hash: ``<day>:total`` and ``<day>:segment:<id>`` streamed sales in cents
                                      of the shard's customers (the store sums the shards)
``{prefix}:v2:{<tag>}:cap:<day>:<campaign>``  set with a TTL: trigger ids of a campaign on a UTC day, each in
                                      the shard of the trigger id (the daily cap counts them over all shards)
``{prefix}:v2:meta``                  hash: ``layout`` (2) and ``shards``
``{prefix}:v2:forecast``              string: the latest forecast refresh as JSON (read and written whole)
``{prefix}:v2:forecast-lease``        string with a TTL: the worker that refreshes and publishes forecasts

The tag of shard ``i`` is ``s<i>.<n>``, with the smallest ``n`` whose slot falls in the ``i``-th of
``shards`` equal slices of the 16,384 slots, so the shards spread evenly over a cluster's masters.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

KEY_FORMAT_VERSION = 2
DEFAULT_SHARDS = 16
CLUSTER_SLOTS = 16384


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def key_slot(key: str) -> int:
    """The Redis Cluster slot of a key (CRC16/XMODEM of its hash tag, as Redis computes it)."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ b) & 0xFF]
    return crc % CLUSTER_SLOTS


def shard_tags(shards: int) -> list[str]:
    """The hash tag of each shard: ``s<i>.<n>`` with its slot in the i-th slice of the slots."""
    tags = []
    for i in range(shards):
        low, high = i * CLUSTER_SLOTS // shards, (i + 1) * CLUSTER_SLOTS // shards
        n = 0
        while not low <= key_slot(f"{{s{i}.{n}}}") < high:
            n += 1
        tags.append(f"s{i}.{n}")
    return tags


def customer_key(shard_root: str, customer_id: str) -> str:
    """The customer's hash, given its shard's root (the store's hot path has the root at hand)."""
    return f"{shard_root}:c:{customer_id}"


def categories_key(shard_root: str, customer_id: str) -> str:
    """The customer's net cents per category (a hash of category -> cents), given its shard's root.

    Apart from the customer's hash so reading the fold never reads it, and only the models that use
    product preferences pay for it.
    """
    return f"{shard_root}:k:{customer_id}"


def profile_key(shard_root: str, customer_id: str) -> str:
    """The customer's latest profile (the attributes as JSON, from the customer-profiles topic)."""
    return f"{shard_root}:a:{customer_id}"


def event_key(shard_root: str, event_id: str) -> str:
    """An event's dedupe marker, given the root of its customer's shard."""
    return f"{shard_root}:e:{event_id}"


def history_key(shard_root: str, customer_id: str) -> str:
    """The customer's change history, given its shard's root."""
    return f"{shard_root}:h:{customer_id}"


def merge_daily_sales(hashes: Iterable[Mapping[Any, Any]]) -> dict[int, dict[str, int]]:
    """The shards' sales hashes (``<day>:<series>`` -> cents, bytes or text) summed: ``{day: {series: cents}}``."""
    out: dict[int, dict[str, int]] = {}
    for fields in hashes:
        for name, cents in fields.items():
            day, _, series = (name.decode() if isinstance(name, bytes) else name).partition(":")
            totals = out.setdefault(int(day), {})
            totals[series] = totals.get(series, 0) + int(cents)
    return out


@dataclass(frozen=True)
class KeySpace:
    """Builds every key the store uses from one prefix and the shard count."""

    prefix: str = "segstream"
    shards: int = DEFAULT_SHARDS
    _tags: list[str] = field(init=False, repr=False, compare=False, default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= CLUSTER_SLOTS:
            raise ValueError(f"shards must be 1..{CLUSTER_SLOTS}, not {self.shards}")
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"a key prefix cannot hold braces (they would move the hash tag): {self.prefix!r}")
        object.__setattr__(self, "_tags", shard_tags(self.shards))

    @property
    def root(self) -> str:
        """``{prefix}:v{version}``: everything the store writes lives under it."""
        return f"{self.prefix}:v{KEY_FORMAT_VERSION}"

    @cached_property
    def shard_roots(self) -> list[str]:
        """``{prefix}:v2:{<tag>}`` per shard: every key of the shard starts with it."""
        return [f"{self.root}:{{{tag}}}" for tag in self._tags]

    def shard_of(self, customer_id: str) -> int:
        """The shard a customer's keys (and its events' markers) live in."""
        return zlib.crc32(customer_id.encode()) % self.shards

    def customer(self, customer_id: str) -> str:
        """The customer's fold and segment record."""
        return customer_key(self.shard_roots[self.shard_of(customer_id)], customer_id)

    def categories(self, customer_id: str) -> str:
        """The customer's net cents per category."""
        return categories_key(self.shard_roots[self.shard_of(customer_id)], customer_id)

    def profile(self, customer_id: str) -> str:
        """The customer's latest profile."""
        return profile_key(self.shard_roots[self.shard_of(customer_id)], customer_id)

    def event(self, event_id: str, customer_id: str) -> str:
        """The dedupe marker of one event (in its customer's shard)."""
        return event_key(self.shard_roots[self.shard_of(customer_id)], event_id)

    def history(self, customer_id: str) -> str:
        """The customer's latest segment changes."""
        return history_key(self.shard_roots[self.shard_of(customer_id)], customer_id)

    def sales(self, shard: int) -> str:
        """Streamed daily sales of a shard's customers."""
        return f"{self.shard_roots[shard]}:sales"

    def watermark(self, shard: int) -> str:
        """The largest event time folded into a shard."""
        return f"{self.shard_roots[shard]}:wm"

    def due(self, shard: int) -> str:
        """A shard's inactivity check schedule."""
        return f"{self.shard_roots[shard]}:due"

    def sweep_lease(self, shard: int) -> str:
        """Who sweeps a shard now."""
        return f"{self.shard_roots[shard]}:sweep"

    def cap(self, shard: int, campaign: str, day: int) -> str:
        """Trigger ids of a campaign on one UTC day whose id falls in this shard (the cap sums the shards)."""
        return f"{self.shard_roots[shard]}:cap:{day}:{campaign}"

    @property
    def meta(self) -> str:
        """The layout version and shard count."""
        return f"{self.root}:meta"

    @property
    def forecast(self) -> str:
        """The latest forecast refresh."""
        return f"{self.root}:forecast"

    @property
    def forecast_lease(self) -> str:
        """Which worker refreshes and publishes the sales forecast now (one for all workers)."""
        return f"{self.root}:forecast-lease"

    @property
    def customer_pattern(self) -> str:
        """A SCAN pattern matching every customer hash."""
        return f"{self.root}:{{*}}:c:*"

    @property
    def history_pattern(self) -> str:
        """A SCAN pattern matching every history list."""
        return f"{self.root}:{{*}}:h:*"

    @staticmethod
    def customer_id_of(key: str) -> str:
        """The customer id at the end of a customer or history key."""
        return key.split("}:", 1)[1].split(":", 1)[1]
