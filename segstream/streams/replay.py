"""Produce a transaction history to the ``transactions`` topic, keyed by customer, in timestamp order.

The CLI loads and cleans the file (with the trainer's loader, which streams/ may not import) and hands
the clean frame to :func:`records_from_frame`; :func:`replay` produces the records with kafka-python, as
fast as the client allows or at a fixed rate, reporting progress through a callback.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from segstream.models.contract import DEFAULT_LIMITS, EventLimits, describe
from segstream.models.errors import EventValidationError
from segstream.models.events import check_not_ahead, parse_event
from segstream.streams.errors import ReplayError

if TYPE_CHECKING:
    import pandas as pd

    from segstream.settings import KafkaSettings

_OPTIONAL = ("quantity", "currency", "channel", "store_id", "category")


@dataclass
class ReplayResult:
    """What a replay sent and how fast."""

    sent: int
    seconds: float

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.sent / self.seconds if self.seconds > 0 else float("inf")


def encode(record: dict[str, Any]) -> bytes:
    """The message value a replay sends for ``record`` (what the worker will parse)."""
    return json.dumps(record, separators=(",", ":")).encode()


def worker_verdict(record: dict[str, Any], limits: EventLimits = DEFAULT_LIMITS, now_ms: int | None = None) -> str:
    """The reason code the worker would dead-letter ``record`` with, or ``""`` when it would accept it.

    The same calls the worker makes (:func:`~segstream.models.events.parse_event` on the encoded bytes, then
    the future-skew check against ``now_ms``, default the current time), so a replay can tell in advance.
    """
    try:
        event = parse_event(encode(record), limits)
        if limits.max_future_skew_ms:
            check_not_ahead(event, int(time.time() * 1000) if now_ms is None else now_ms, limits.max_future_skew_ms)
    except EventValidationError as exc:
        return exc.code
    return ""


@dataclass
class Rejections:
    """What the worker would dead-letter of a file: rows by reason code, and where each reason first shows.

    Attributes:
        counts: reason code -> rows.
        examples: reason code -> up to three places, e.g. ``"row 7: '1997-01-01'"``.
        duplicates: rows repeating an earlier row's event id (the worker skips them; they are not sent).
    """

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    duplicates: int = 0

    @property
    def total(self) -> int:
        """Rows the worker would dead-letter."""
        return sum(self.counts.values())

    def render(self) -> str:
        """A few lines for the terminal."""
        if not self.total:
            lines = ["the worker accepts every row"]
        else:
            lines = [f"the worker would dead-letter {self.total:,} rows:"]
            for code, n in sorted(self.counts.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {code:<24}{n:>10,}  {describe(code)}; first at {', '.join(self.examples[code])}")
        if self.duplicates:
            lines.append(f"  ({self.duplicates:,} rows repeat an earlier event id and are not sent)")
        return "\n".join(lines)


def records_from_frame(events: pd.DataFrame, sort: bool = True) -> list[dict[str, Any]]:
    """Event-contract dicts from a clean events frame (``timestamp`` as epoch milliseconds).

    Args:
        events: Clean events (event_id, customer_id, timestamp, amount, optional contract columns; other
            columns are passed through).
        sort: Order by timestamp (stable, so ties keep file order).
    """
    import numpy as np
    import pandas as pd

    frame = events.sort_values("timestamp", kind="stable") if sort else events
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    ts_ms = ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ms]").astype(np.int64).to_numpy()
    extra = [c for c in frame.columns if c not in ("event_id", "customer_id", "timestamp", "amount")]
    columns = {c: frame[c].to_numpy() for c in extra}
    ids = frame["event_id"].astype(str).to_numpy()
    customers = frame["customer_id"].astype(str).to_numpy()
    amounts = frame["amount"].to_numpy(dtype=np.float64)
    out: list[dict[str, Any]] = []
    for i in range(len(frame)):
        rec: dict[str, Any] = {
            "event_id": ids[i],
            "customer_id": customers[i],
            "timestamp": int(ts_ms[i]),
            "amount": float(amounts[i]),
        }
        for name, values in columns.items():
            value = _plain(values[i])
            if value is not None:
                # A clean frame holds an order's lines as JSON text; the event carries the array itself.
                rec[name] = json.loads(value) if name == "lines" and isinstance(value, str) else value
        out.append(rec)
    return out


def _plain(value: Any) -> Any:
    """A JSON-friendly Python value, or None for missing ones."""
    if value is None:
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
    except (TypeError, ValueError):
        pass
    return str(value)


def replay(
    records: Sequence[dict[str, Any]] | Iterable[dict[str, Any]],
    kafka: KafkaSettings,
    topic: str,
    *,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 2000,
    raw_values: Iterable[tuple[bytes | None, bytes | None]] | None = None,
) -> ReplayResult:
    """Produce records (JSON, key = customer id) in the given order; flush before returning.

    Args:
        records: Event dicts (see :func:`records_from_frame`).
        kafka: Connection settings.
        topic: Target topic.
        rate: Messages per second; ``None`` for as fast as possible.
        progress: Called with the number sent so far, every ``progress_every`` messages and at the end.
        progress_every: How often to call ``progress``.
        raw_values: Instead of ``records``, (key, value) byte pairs sent as they are (for bad-input tests).

    Raises:
        ReplayError: The broker cannot be reached or refused the messages.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        producer = KafkaProducer(**kafka.kafka_python_kwargs(), acks=1, linger_ms=5, batch_size=512 * 1024,
                                 max_request_size=2_000_000)  # fmt: skip
    except (KafkaError, OSError) as exc:
        raise ReplayError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}") from exc
    pairs: Iterable[tuple[bytes | None, bytes | None]]
    if raw_values is not None:
        pairs = raw_values
    else:
        pairs = ((str(r.get("customer_id", "")).encode(), encode(r)) for r in records)
    started = time.perf_counter()
    sent = 0
    failures: list[BaseException] = []
    try:
        for key, value in pairs:
            producer.send(topic, key=key, value=value).add_errback(failures.append)
            sent += 1
            if rate is not None and sent % max(1, min(int(rate // 20), 500)) == 0:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if progress is not None and sent % progress_every == 0:
                progress(sent)
        producer.flush()
    except KafkaError as exc:
        raise ReplayError(f"producing to {topic!r} at {kafka.bootstrap_servers} failed: {exc}") from exc
    finally:
        producer.close(timeout=10)
    if failures:
        raise ReplayError(f"producing to {topic!r} at {kafka.bootstrap_servers} failed: {failures[0]}")
    if progress is not None:
        progress(sent)
    return ReplayResult(sent, time.perf_counter() - started)
