"""Read the ``dead-letters`` topic back: summarise it by reason, and re-send chosen records after a fix.

Each dead letter (see :func:`segstream.streams.outputs.dead_letter_payload`) holds the raw message, the
reason text and its stable ``reason_code``. Re-sending puts the raw bytes back on ``transactions``
unchanged, so every event keeps its ``event_id``: the worker folds an event once, and a second replay of
the same records only adds duplicates it skips.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from segstream.streams.errors import StreamsError

if TYPE_CHECKING:
    from segstream.settings import KafkaSettings

# Dead letters written before reason codes existed carry none.
UNKNOWN_REASON = "unknown"


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, decoded."""

    reason_code: str
    error: str
    raw: bytes | None
    raw_truncated: bool
    key: bytes | None
    source: str
    timestamp_ms: int
    topic: str | None = None  # the topic the refused message was read from

    @property
    def replayable(self) -> bool:
        """Whether the original message is here whole (a truncated or empty one cannot be sent again)."""
        return self.raw is not None and not self.raw_truncated


def decode(value: bytes | None, timestamp_ms: int) -> DeadLetter | None:
    """A :class:`DeadLetter` from a message value, or None when it is not one of ours."""
    try:
        doc = json.loads(value or b"")
    except ValueError:
        return None
    if not isinstance(doc, dict) or "error" not in doc:
        return None
    raw: bytes | None = None
    body = doc.get("raw")
    if isinstance(body, str):
        raw = base64.b64decode(body) if doc.get("raw_encoding") == "base64" else body.encode("utf-8", "surrogatepass")
    key = doc.get("key")
    return DeadLetter(
        reason_code=str(doc.get("reason_code") or UNKNOWN_REASON),
        error=str(doc.get("error")),
        raw=raw,
        raw_truncated=bool(doc.get("raw_truncated")),
        key=key.encode("utf-8", "surrogatepass") if isinstance(key, str) else None,
        source=f"{doc.get('topic')}[{doc.get('partition')}]@{doc.get('offset')}",
        timestamp_ms=timestamp_ms,
        topic=doc.get("topic") if isinstance(doc.get("topic"), str) else None,
    )


def read_dead_letters(kafka: KafkaSettings, topic: str, since_ms: int | None = None, timeout_s: float = 10.0
                      ) -> list[DeadLetter]:
    """Every dead letter on ``topic`` (from ``since_ms``, by Kafka record time), oldest first.

    A consumer without a group: it commits nothing and is invisible to the worker.

    Raises:
        StreamsError: the broker cannot be reached, or the topic was not read to its end in time.
    """
    from segstream.topic_reader import TopicReadError, read_records

    try:
        found = read_records(kafka, topic, since_ms=since_ms, timeout_s=timeout_s, require_end=True)
    except TopicReadError as exc:
        raise StreamsError(str(exc)) from exc
    out = [letter for r in found if (letter := decode(r.value, r.timestamp_ms)) is not None]
    out.sort(key=lambda d: d.timestamp_ms)
    return out


@dataclass
class Summary:
    """Dead letters by reason code."""

    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    example: dict[str, str] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, reasons most frequent first."""
        return {
            "total": self.total,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "by_reason": [{"reason_code": code, "count": n, "example": self.example[code]}
                          for code, n in self.by_reason.most_common()],  # fmt: skip
        }

    def render(self) -> str:
        """A table for the terminal."""
        if not self.total:
            return "no dead letters"
        lines = [f"{self.total:,} dead letters", f"  {'reason_code':<26}{'count':>10}  example"]
        for code, n in self.by_reason.most_common():
            lines.append(f"  {code:<26}{n:>10,}  {self.example[code][:90]}")
        return "\n".join(lines)


def summarise(letters: Iterable[DeadLetter]) -> Summary:
    """Count dead letters by reason code, with one error text for each."""
    summary = Summary()
    for letter in letters:
        summary.total += 1
        summary.by_reason[letter.reason_code] += 1
        summary.example.setdefault(letter.reason_code, letter.error)
        summary.first_ms = letter.timestamp_ms if summary.first_ms is None else summary.first_ms
        summary.last_ms = letter.timestamp_ms
    return summary


def select(letters: Iterable[DeadLetter], reasons: Iterable[str] = ()) -> tuple[list[DeadLetter], int]:
    """The replayable dead letters with one of ``reasons`` (all reasons when empty), and how many matching
    ones cannot be replayed (truncated or empty originals)."""
    wanted = set(reasons)
    chosen, lost = [], 0
    for letter in letters:
        if wanted and letter.reason_code not in wanted:
            continue
        if letter.replayable:
            chosen.append(letter)
        else:
            lost += 1
    return chosen, lost
