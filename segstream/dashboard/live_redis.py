"""A read-only view of the worker's state in Redis (key layout v2, see ``segstream.models.state_keys``).

The dashboard never writes: :class:`ReadOnlyRedis` wraps the client and offers read commands only, so no
page can write by accident (a test snapshots the database before and after every page). The key layout is
imported from ``segstream.models.state_keys`` rather than re-declared: it is a versioned contract pinned by
a golden test, which the worker's store and the dashboard both read, so one definition cannot drift.

Features are rebuilt in Python from the customer hash with the models core
(:class:`~segstream.models.customer_state.CustomerState` and ``features_from_aggregates``), as of the
watermark, which is what the worker's VIEW script computes; no Lua runs here, because EVAL is a write-capable
command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from segstream.dashboard.errors import LiveStateUnavailable
from segstream.models.customer_state import CustomerState, aggregates_matrix
from segstream.models.features import DAY_MS, FEATURE_NAMES, NO_TIMESTAMP, features_from_aggregates
from segstream.models.state_keys import DEFAULT_SHARDS, KeySpace, merge_daily_sales
from segstream.redis_clients import sync_client
from segstream.settings import RedisSettings

_INT_FIELDS = {
    "ft": "first_ts",
    "lt": "last_ts",
    "fp": "first_purchase_ts",
    "lp": "last_purchase_ts",
    "p": "purchases",
    "g": "gross_cents",
    "n": "net_cents",
    "r": "returns",
    "rc": "returns_cents",
}


class ReadOnlyRedis:
    """A Redis client that can only read (GET, HGET, HGETALL, LRANGE, SCAN, DBSIZE, PING)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def ping(self) -> bool:
        """True when the server answers."""
        return bool(self._client.ping())

    def get(self, key: str) -> str | None:
        """GET."""
        return _text(self._client.get(key))

    def hgetall(self, key: str) -> dict[str, str]:
        """HGETALL."""
        return {_text(k) or "": _text(v) or "" for k, v in self._client.hgetall(key).items()}

    def get_many(self, keys: list[str]) -> list[str | None]:
        """GET of many keys in one round trip (pipelined, so the keys may live in different cluster slots)."""
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return [_text(v) for v in pipe.execute()]

    def hgetall_many(self, keys: list[str]) -> list[dict[str, str]]:
        """HGETALL of many hashes in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return [{_text(k) or "": _text(v) or "" for k, v in reply.items()} for reply in pipe.execute()]

    def hget_many(self, keys: list[str], field_name: str) -> list[str | None]:
        """HGET of one field of many hashes, in one round trip (a read-only, non-transactional pipeline)."""
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, field_name)
        return [_text(v) for v in pipe.execute()]

    def lrange(self, key: str, start: int, stop: int) -> list[str]:
        """LRANGE."""
        return [_text(v) or "" for v in self._client.lrange(key, start, stop)]

    def scan(self, match: str, limit: int) -> Iterator[str]:
        """SCAN keys matching ``match``, at most ``limit`` of them."""
        for i, key in enumerate(self._client.scan_iter(match=match, count=1000)):
            if i >= limit:
                return
            yield _text(key) or ""

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


@dataclass
class LiveCustomer:
    """One customer as the worker sees it, as of the watermark."""

    customer_id: str
    features: dict[str, float]
    segment: int | None
    pending: int | None
    model_version: str
    scored_as_of_ms: int
    watermark_ms: int
    history: list[dict[str, Any]] = field(default_factory=list)
    # Net cents per category (product preferences; empty when the events carry no category).
    categories: dict[str, int] = field(default_factory=dict)


class LiveReader:
    """Reads customers, changes, sales, forecasts and the watermark the worker keeps in Redis."""

    def __init__(self, redis: ReadOnlyRedis, prefix: str = "segstream", shards: int = DEFAULT_SHARDS) -> None:
        self.redis = redis
        self.keys = KeySpace(prefix, shards)

    @classmethod
    def connect(cls, settings: RedisSettings, timeout_s: float = 1.5) -> LiveReader:
        """Connect and ping (short timeouts: a missing Redis must not hang a page).

        Raises:
            LiveStateUnavailable: Redis does not answer; the message names the (redacted) URL.
        """
        import redis

        kwargs = settings.client_kwargs() | {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        try:
            client = sync_client(settings.url, **kwargs)
            reader = cls(ReadOnlyRedis(client), settings.key_prefix, settings.shards)
            reader.redis.ping()
        except (redis.RedisError, OSError, ValueError) as exc:
            from segstream.settings import redact_url

            raise LiveStateUnavailable(f"Redis at {redact_url(settings.url)} is not reachable ({exc})") from exc
        return reader

    def watermark_ms(self) -> int:
        """The event-time watermark: the largest over the shards (0 before the worker has seen anything)."""
        values = self.redis.get_many([self.keys.watermark(s) for s in range(self.keys.shards)])
        return max([0, *(int(v) for v in values if v)])

    def customer(self, customer_id: str) -> LiveCustomer | None:
        """The customer's features (as of the watermark), segment record and change history; None if unknown."""
        raw = self.redis.hgetall(self.keys.customer(customer_id))
        if not raw or "ft" not in raw:
            return None
        watermark = max(self.watermark_ms(), int(raw["lt"]))
        state = state_from_hash(raw)
        row = features_from_aggregates(aggregates_matrix([state.aggregates(watermark)]), watermark)[0]
        history = [json.loads(item) for item in self.redis.lrange(self.keys.history(customer_id), 0, -1)]
        return LiveCustomer(
            customer_id=customer_id, features=dict(zip(FEATURE_NAMES, map(float, row), strict=True)),
            segment=_int_or_none(raw.get("sg")), pending=_int_or_none(raw.get("sp")),
            model_version=raw.get("sv", ""), scored_as_of_ms=int(raw.get("sa") or 0), watermark_ms=watermark,
            history=history,
            categories={k: int(v) for k, v in self.redis.hgetall(self.keys.categories(customer_id)).items()},
        )  # fmt: skip

    def segment_counts(self, limit: int = 200_000) -> dict[int, int]:
        """Customers per current segment (unscored customers left out), over at most ``limit`` customers."""
        keys = list(self.redis.scan(self.keys.customer_pattern, limit))
        counts: dict[int, int] = {}
        for start in range(0, len(keys), 5000):
            for value in self.redis.hget_many(keys[start : start + 5000], "sg"):
                if value:
                    counts[int(value)] = counts.get(int(value), 0) + 1
        return counts

    def recent_changes(self, limit: int = 50, scan_limit: int = 20_000) -> list[dict[str, Any]]:
        """The newest segment changes across customers (from their history lists), newest first."""
        changes: list[dict[str, Any]] = []
        for key in self.redis.scan(self.keys.history_pattern, scan_limit):
            changes += [json.loads(item) for item in self.redis.lrange(key, 0, 4)]
        changes.sort(key=lambda c: int(c.get("event_time_ms") or 0), reverse=True)
        return changes[:limit]

    def daily_sales(self) -> pd.DataFrame:
        """Streamed daily sales: ``date, series, sales`` (series ``total`` or ``segment:<id>``, money units)."""
        daily = merge_daily_sales(self.redis.hgetall_many([self.keys.sales(s) for s in range(self.keys.shards)]))
        rows = [(pd.Timestamp(day * DAY_MS, unit="ms"), series, cents / 100.0)
                for day, by_series in daily.items() for series, cents in by_series.items()]  # fmt: skip
        frame = pd.DataFrame(rows, columns=["date", "series", "sales"])
        return frame.sort_values(["series", "date"]).reset_index(drop=True)

    def forecast(self) -> Any | None:
        """The worker's latest forecast refresh (parsed JSON), or None."""
        raw = self.redis.get(self.keys.forecast)
        return json.loads(raw) if raw else None


def state_from_hash(raw: dict[str, str]) -> CustomerState:
    """Rebuild the fold from the stored hash (fields ft lt fp lp p g n r rc and d:/q: day buckets)."""
    state = CustomerState()
    for short, name in _INT_FIELDS.items():
        default = NO_TIMESTAMP if name.endswith("_ts") else 0
        setattr(state, name, int(raw[short]) if raw.get(short) else default)
    for name, value in raw.items():
        kind, _, day = name.partition(":")
        if kind in ("d", "q") and day:
            bucket = state.days.setdefault(int(day), [0, 0])
            bucket[0 if kind == "d" else 1] = int(value)
    return state


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
