"""Copy a key layout v1 state store into layout v2 (``segstream state migrate``).

Run it with the workers stopped, after they drained (every consumed offset committed). Everything the
workers read is carried over, field for field: the customer hashes (fold, segment record, window cache,
cooldowns), change histories, the watermark, the inactivity schedule, streamed sales, the daily campaign
caps with their remaining TTL, and the forecast. What cannot be carried over is said in the report:

- v1 dedupe markers (``e:<event_id>``) do not record their event's customer, and v2 keeps a marker in its
  customer's shard. A producer's duplicate of an event folded before the migration would be folded again,
  so the markers are counted, not copied; a drained, stopped pipeline has nothing left to redeliver.
- v1 keeps one sales hash and one watermark: they go to shard 0 (the store sums sales over the shards and
  takes the largest watermark), so totals and the watermark read back unchanged.

The v1 keys stay unless ``drop_v1`` is set, so a migration can be checked (and v1 workers restarted) first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from segstream.models.state_keys import KEY_FORMAT_VERSION, KeySpace
from segstream.streams.state.base import StateStoreError

V1 = 1
_CHUNK = 500


@dataclass
class MigrationReport:
    """What was copied (and what was not)."""

    customers: int = 0
    histories: int = 0
    due: int = 0
    sales_fields: int = 0
    cap_sets: int = 0
    forecast: bool = False
    watermark_ms: int = 0
    markers_not_copied: int = 0
    v1_keys_dropped: int = 0

    def lines(self) -> list[str]:
        """A human summary, one fact per line."""
        return [
            f"customers: {self.customers:,} hashes copied",
            f"change histories: {self.histories:,}",
            f"inactivity schedule: {self.due:,} customers",
            f"streamed sales: {self.sales_fields:,} day/series totals",
            f"campaign cap sets: {self.cap_sets:,}",
            f"forecast: {'copied' if self.forecast else 'none stored'}",
            f"watermark: {self.watermark_ms}",
            f"dedupe markers not copied: {self.markers_not_copied:,} (v1 markers do not name their customer)",
            f"v1 keys dropped: {self.v1_keys_dropped:,}" if self.v1_keys_dropped else "v1 keys kept",
        ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _scan(client: Any, pattern: str) -> Iterator[str]:
    for key in client.scan_iter(match=pattern, count=1000):
        yield _text(key)


def migrate_v1_to_v2(source: Any, target: Any, prefix: str, shards: int, *, drop_v1: bool = False) -> MigrationReport:
    """Copy the v1 state under ``prefix`` on ``source`` into layout v2 on ``target`` (may be the same server).

    Raises:
        StateStoreError: no v1 state under the prefix, or v2 state is already there (a second run would
            double-count sales; delete the v2 keys first to start again).
    """
    v1 = f"{prefix}:v{V1}"
    keys = KeySpace(prefix, shards)
    if source.exists(f"{v1}:wm") == 0 and next(_scan(source, f"{v1}:c:*"), None) is None:
        raise StateStoreError(f"no layout v1 state under {v1!r}: nothing to migrate")
    if target.exists(keys.meta) or next(_scan(target, keys.customer_pattern), None) is not None:
        raise StateStoreError(
            f"layout v{KEY_FORMAT_VERSION} state is already under {keys.root!r}: delete it first to migrate again"
        )
    report = MigrationReport()
    copied: list[str] = []

    # Customers, in chunks: one pipelined read and one pipelined write per chunk.
    customer_keys = list(_scan(source, f"{v1}:c:*"))
    for start in range(0, len(customer_keys), _CHUNK):
        chunk = customer_keys[start : start + _CHUNK]
        read = source.pipeline(transaction=False)
        for key in chunk:
            read.hgetall(key)
        write = target.pipeline(transaction=False)
        for key, fields in zip(chunk, read.execute(), strict=True):
            if fields:
                write.hset(keys.customer(key[len(v1) + 3 :]), mapping=fields)
        write.execute()
        report.customers += len(chunk)
        copied += chunk
    for key in _scan(source, f"{v1}:h:*"):
        items = source.lrange(key, 0, -1)
        if items:
            target.rpush(keys.history(key[len(v1) + 3 :]), *items)
            report.histories += 1
        copied.append(key)
    due = source.zrange(f"{v1}:due", 0, -1, withscores=True)
    write = target.pipeline(transaction=False)
    for member, at in due:
        cid = _text(member)
        write.zadd(keys.due(keys.shard_of(cid)), {cid: at})
    write.execute()
    report.due = len(due)
    sales = source.hgetall(f"{v1}:sales")
    if sales:
        target.hset(keys.sales(0), mapping=sales)
    report.sales_fields = len(sales)
    watermark = source.get(f"{v1}:wm")
    if watermark is not None:
        target.set(keys.watermark(0), watermark)
        report.watermark_ms = int(watermark)
    for key in _scan(source, f"{v1}:cap:*"):
        day, _, campaign = key[len(v1) + 5 :].partition(":")
        ttl_ms = source.pttl(key)
        per_shard: dict[int, list[str]] = {}
        for trigger_id in map(_text, source.smembers(key)):
            per_shard.setdefault(keys.shard_of(trigger_id), []).append(trigger_id)
        for shard, ids in per_shard.items():  # as finalize writes them: by the trigger id's shard
            target_key = keys.cap(shard, campaign, int(day))
            target.sadd(target_key, *ids)
            if ttl_ms and ttl_ms > 0:
                target.pexpire(target_key, ttl_ms)
        report.cap_sets += 1
        copied.append(key)
    forecast = source.get(f"{v1}:forecast")
    if forecast is not None:
        target.set(keys.forecast, forecast)
        report.forecast = True
    if drop_v1:
        markers = list(_scan(source, f"{v1}:e:*"))  # one scan serves the count and the drop
        copied += markers
        report.markers_not_copied = len(markers)
    else:
        report.markers_not_copied = sum(1 for _ in _scan(source, f"{v1}:e:*"))
    target.hset(keys.meta, mapping={"layout": str(KEY_FORMAT_VERSION), "shards": str(shards), "migrated_from": "1"})
    if drop_v1:
        doomed = copied + [f"{v1}:{name}" for name in ("due", "sales", "wm", "forecast")]
        for start in range(0, len(doomed), _CHUNK):
            report.v1_keys_dropped += int(source.delete(*doomed[start : start + _CHUNK]))
    return report
