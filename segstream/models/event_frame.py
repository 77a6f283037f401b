"""The event contract applied to a whole table at once: one reason code per row, as the worker would say it.

:func:`judge_rows` takes the candidate fields of many events, already read from their file cells (see
:mod:`segstream.trainer.cleaning` for how a file's cells become these), and applies the rules of
:mod:`segstream.models.contract` in the order :func:`segstream.models.events.validate_payload` applies
them, then the future-skew check the worker makes after it. Each row gets the code of the first rule it
breaks, or ``""`` when the worker would accept it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from segstream.models.contract import MAX_ABS_AMOUNT, MAX_ID_LENGTH, MAX_TEXT_LENGTH, OPTIONAL_TEXT, EventLimits
from segstream.models.features import to_cents
from segstream.models.preferences import LinesError, parse_lines

VALID = ""


@dataclass(frozen=True)
class CandidateRows:
    """Candidate event fields of ``n`` rows, as a file's cells were read.

    Attributes:
        event_id: Text (``NA`` where the cell was blank).
        customer_id: Text (``NA`` where blank).
        ts_ms: Event time in epoch ms as float64; NaN where the cell was blank or could not be read.
        ts_missing: Where the timestamp cell was blank.
        amount: float64; NaN where blank or unreadable (non-finite values count as unreadable).
        amount_missing: Where the amount cell was blank.
        quantity: float64; NaN where absent or not a number (an absent quantity is no error; a non-finite
            one is left out of the event, as :mod:`segstream.streams.replay` writes it).
        texts: Optional text field -> its text (``NA`` where absent); only the fields the file has.
        lines: The ``lines`` cells as read (JSON text, an already decoded list, or ``NA``), when the file has
            the column.
    """

    event_id: pd.Series
    customer_id: pd.Series
    ts_ms: np.ndarray
    ts_missing: np.ndarray
    amount: np.ndarray
    amount_missing: np.ndarray
    quantity: np.ndarray
    texts: dict[str, pd.Series]
    lines: pd.Series | None = field(default=None)


def decode_lines(cell: object) -> object:
    """A ``lines`` cell as the event field it stands for: JSON text decoded, a list as it is, None if blank.

    Text that is not JSON comes back as the text itself, which the contract then refuses.
    """
    if cell is None or (isinstance(cell, float) and np.isnan(cell)) or cell is pd.NA:
        return None
    if isinstance(cell, np.ndarray):  # a Parquet or DuckDB list column
        cell = cell.tolist()
    if isinstance(cell, str):
        text = cell.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text
    return cell


def _bad_lines(lines: pd.Series, amount: np.ndarray) -> np.ndarray:
    """Rows whose lines the contract refuses (absent lines break nothing; unreadable amounts fail earlier)."""
    out = np.zeros(len(lines), dtype=bool)
    for i, cell in enumerate(lines.to_numpy(dtype=object)):
        decoded = decode_lines(cell)
        if decoded is None or not np.isfinite(amount[i]):
            continue
        try:
            parse_lines(decoded, to_cents(float(amount[i])))
        except LinesError:
            out[i] = True
    return out


def _bad_identifier(ids: pd.Series) -> np.ndarray:
    """Present ids the contract refuses: too long, not printable, or with a space."""
    present = ids.notna().to_numpy()
    out = np.zeros(len(ids), dtype=bool)
    if present.any():
        values = ids[present].astype(str)
        too_long = (values.str.len() > MAX_ID_LENGTH).to_numpy()
        # Judged once per distinct id: a history repeats each customer many times.
        uniq = pd.unique(values.to_numpy(dtype=object))
        printable = {v: v.isprintable() and " " not in v for v in uniq}
        shape = values.map(printable).to_numpy(dtype=bool)
        out[present] = too_long | ~shape
    return out


def judge_rows(rows: CandidateRows, limits: EventLimits, now_ms: int | None) -> np.ndarray:
    """The reason code the worker would give each row, or :data:`VALID`.

    Args:
        rows: The candidate fields.
        limits: The contract's bounds in force.
        now_ms: The reader's clock for the future-skew check (None skips it).

    Returns:
        An object array of codes, one per row.
    """
    n = len(rows.ts_ms)
    ts, amount = rows.ts_ms, rows.amount
    ts_read = np.isfinite(ts)
    amount_read = np.isfinite(amount)
    rules: list[tuple[str, np.ndarray]] = [
        ("missing_event_id", rows.event_id.isna().to_numpy()),
        ("invalid_event_id", _bad_identifier(rows.event_id)),
        ("missing_customer_id", rows.customer_id.isna().to_numpy()),
        ("invalid_customer_id", _bad_identifier(rows.customer_id)),
        ("missing_timestamp", rows.ts_missing),
        ("invalid_timestamp", ~ts_read),
        ("timestamp_out_of_range", ts_read & ((ts < limits.min_ts_ms) | (ts >= limits.max_ts_ms))),
        ("missing_amount", rows.amount_missing),
        ("invalid_amount", ~amount_read),
        ("amount_out_of_range", amount_read & (np.abs(np.where(amount_read, amount, 0.0)) > MAX_ABS_AMOUNT)),
        # A quantity that is not a finite number is left out of the event (it is optional), so it breaks nothing.
        ("invalid_quantity", np.abs(np.where(np.isfinite(rows.quantity), rows.quantity, 0.0)) > MAX_ABS_AMOUNT),
    ]
    for name in (*OPTIONAL_TEXT, "store_id"):
        text = rows.texts.get(name)
        if text is not None:
            rules.append(("invalid_field", (text.str.len() > MAX_TEXT_LENGTH).to_numpy(dtype=bool, na_value=False)))
    if rows.lines is not None:
        rules.append(("invalid_lines", _bad_lines(rows.lines, amount)))
    if now_ms is not None and limits.max_future_skew_ms > 0:
        rules.append(("timestamp_in_future", ts_read & (ts - now_ms > limits.max_future_skew_ms)))
    codes = np.full(n, VALID, dtype=object)
    # Last rule first, so the first rule a row breaks is the one that stays.
    for code, broken in reversed(rules):
        codes[broken] = code
    return codes
