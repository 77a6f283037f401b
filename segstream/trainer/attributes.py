"""Customer tables: load and check one, choose attributes, fit their :class:`AttributeSpec`, encode.

A customer table (``--customers FILE``, CSV or Parquet, or a DataFrame) has one row per customer: a
``customer_id`` column (also found as "Customer ID", "customerId") and attribute columns. ``--attributes
a,b,c`` chooses which of them join the segmentation features. Each chosen column is

* numeric when every non-empty value parses as a number, and then imputed with its training median;
* categorical otherwise (booleans too): the ``max_levels`` most frequent levels are kept, the rest,
  levels seen only later and missing values are ``other``.

A column where most values are numbers (90% or more) but some are not is refused, naming the row: it is
almost always a typo ("n/a", "1,5") that would silently turn income into a 1,000-level category.

The pure encode step lives in :mod:`segstream.models.attributes` so the stream can apply it identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segstream.models.attributes import (
    CATEGORICAL,
    DEFAULT_MAX_LEVELS,
    NUMERIC,
    OTHER,
    Attribute,
    AttributeSpec,
    level_text,
    parse_number,
)
from segstream.trainer.errors import DataFileError
from segstream.trainer.loading import _find, _read

ID = "customer_id"
_NUMERIC_SHARE = 0.9  # at least this share of numbers, and not all: a typo, refused


@dataclass
class CustomerTable:
    """A checked customer table.

    Attributes:
        frame: Raw attribute values (CSV cells stay strings), index ``customer_id`` (str), unique.
        rows: customer_id -> 1-based data row of the source (for error messages).
        where: ``file <path>`` or ``customer table`` (messages start with it).
    """

    frame: pd.DataFrame
    rows: pd.Series
    where: str

    @property
    def columns(self) -> list[str]:
        """The attribute columns the table offers."""
        return [str(c) for c in self.frame.columns]

    def __len__(self) -> int:
        return len(self.frame)


def load_customers(source: str | Path | pd.DataFrame, where: str | None = None) -> CustomerTable:
    """Read and check a customer table.

    Args:
        source: A CSV/Parquet path (by extension) or a DataFrame with a ``customer_id`` column.
        where: How messages name the source (default ``file <path>`` / ``customer table``).

    Raises:
        DataFileError: Unreadable file, no ``customer_id`` column, an empty or duplicated customer id;
            the message names the file, the column and the row.
    """
    if isinstance(source, pd.DataFrame):
        where = where or "customer table"
        df = source.copy()
        df.columns = [str(c).strip() for c in df.columns]
        df.index = pd.RangeIndex(1, len(df) + 1, name="row")
        if len(df) == 0:
            raise DataFileError(f"{where}: no data rows")
    else:
        path = Path(source)
        where = where or f"file {path}"
        df = _read(path)
    id_col = _find(df, (ID,))
    if id_col is None:
        raise DataFileError(f"{where}: required column {ID} is missing (columns: {', '.join(df.columns)}); "
                            "a customer table has one row per customer and a customer_id column")  # fmt: skip
    ids = df[id_col].map(level_text)
    empty = ids.isna()
    if empty.any():
        raise DataFileError(f"{where}: column {id_col}, row {int(ids.index[empty][0])}: empty customer id")
    dup = ids.duplicated(keep=False)
    if dup.any():
        first = ids[dup].iloc[0]
        rows = [int(r) for r in ids.index[ids == first][:2]]
        raise DataFileError(f"{where}: column {id_col}: customer id {first!r} appears more than once "
                            f"(rows {rows[0]} and {rows[1]}); a customer table has one row per customer")  # fmt: skip
    frame = df.drop(columns=[id_col])
    row_numbers = pd.Series(df.index.to_numpy(), index=pd.Index(ids.to_numpy(), name=ID), name="row")
    frame.index = pd.Index(ids.to_numpy(), name=ID)
    return CustomerTable(frame=frame, rows=row_numbers, where=where)


def parse_attribute_names(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"age, income,share"`` -> ``("age", "income", "share")`` (empty items dropped)."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(s.strip() for s in items if s and s.strip())


def fit_attribute_spec(
    table: CustomerTable,
    names: Sequence[str],
    *,
    max_levels: int = DEFAULT_MAX_LEVELS,
    reserved: Sequence[str] = (),
    customers: Sequence[str] | pd.Index | None = None,
) -> AttributeSpec:
    """Choose ``names`` from the table and fit how each is encoded (kind, median or kept levels).

    Args:
        table: The checked customer table.
        names: The chosen attribute columns, in order.
        max_levels: Cap on the kept levels of a categorical attribute (the rest is ``other``).
        reserved: Names an attribute may not have (the behaviour features, when joined to them).
        customers: Fit on these customers' rows only (those being segmented); default all.

    Raises:
        DataFileError: No names, an unknown, repeated, reserved or empty column, or a mostly numeric
            column with a non-number in it (naming the row).
    """
    names = list(names)
    if not names:
        raise DataFileError(f"{table.where}: no attributes chosen; pass --attributes a,b,c "
                            f"(columns: {', '.join(table.columns)})")  # fmt: skip
    if max_levels < 1:
        raise DataFileError(f"{table.where}: the level cap must be at least 1, got {max_levels}")
    frame = table.frame if customers is None else table.frame.loc[table.frame.index.intersection(customers)]
    attributes: list[Attribute] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataFileError(f"{table.where}: --attributes names column {name!r} twice")
        seen.add(name)
        if name == ID or name not in table.frame.columns:
            raise DataFileError(f"{table.where}: --attributes column {name!r} is not an attribute column of the "
                                f"customer table (columns: {', '.join(table.columns)})")  # fmt: skip
        if name in reserved:
            raise DataFileError(f"{table.where}: column {name!r} has the name of a behaviour feature; rename it "
                                "in the customer table")  # fmt: skip
        attributes.append(_fit_one(table, frame, name, max_levels))
    return AttributeSpec(tuple(attributes), max_levels)


def _fit_one(table: CustomerTable, frame: pd.DataFrame, name: str, max_levels: int) -> Attribute:
    values = frame[name]
    present = values[~values.map(lambda v: level_text(v) is None)]
    if len(present) == 0:
        raise DataFileError(f"{table.where}: column {name!r} has no values for the customers being segmented")
    if values.dtype != bool and not pd.api.types.is_bool_dtype(values):
        numbers = present.map(parse_number)
        ok = numbers.notna()
        if ok.all():
            return Attribute(name, NUMERIC, fill=float(np.median(numbers.to_numpy(dtype=np.float64))))
        if ok.mean() >= _NUMERIC_SHARE:
            bad = present.index[~ok.to_numpy()][0]
            raise DataFileError(f"{table.where}: column {name!r}, row {int(table.rows[bad])}: {present[bad]!r} "
                                f"is not a number, but {ok.mean():.0%} of the column are; fix the value or "
                                "leave the cell empty (empty cells get the median)")  # fmt: skip
    counts = present.map(level_text).value_counts()
    order = sorted(((int(c), str(lv)) for lv, c in counts.items() if str(lv) != OTHER), key=lambda t: (-t[0], t[1]))
    return Attribute(name, CATEGORICAL, levels=tuple(lv for _, lv in order[:max_levels]))


@dataclass
class EncodedAttributes:
    """Encoded attributes of the customers being modelled, and how many the table lacked.

    Attributes:
        frame: index customer_id (the requested customers, in order), columns ``spec.columns``.
        coverage: ``customers``, ``in_table``, ``missing_from_table`` (imputed: medians and ``other``),
            ``table_only`` (table rows for customers not modelled, left out).
    """

    frame: pd.DataFrame
    coverage: dict[str, int]


def encode_customers(spec: AttributeSpec, table: CustomerTable, customers: pd.Index | None = None) -> EncodedAttributes:
    """Encode the table's chosen attributes for ``customers`` (default: every table row).

    A customer absent from the table gets all attributes missing, so numeric ones take the training
    median and categorical ones ``other``; they are counted in ``coverage``.
    """
    index = pd.Index(table.frame.index if customers is None else customers, name=ID).astype(str)
    present = index.isin(table.frame.index)
    raw = table.frame.reindex(index)
    n = len(index)
    cols = {a.name: raw[a.name].to_numpy(dtype=object) if a.name in raw.columns else [None] * n
            for a in spec.attributes}  # fmt: skip
    matrix = spec.encode_columns(cols, n)
    frame = pd.DataFrame(matrix, index=index, columns=list(spec.columns))
    coverage = {
        "customers": int(n),
        "in_table": int(present.sum()),
        "missing_from_table": int((~present).sum()),
        "table_only": int((~table.frame.index.isin(index)).sum()),
    }
    return EncodedAttributes(frame, coverage)


def categorical_blocks(spec: AttributeSpec) -> list[list[str]]:
    """The encoded columns of each categorical attribute (scaled as one block in the segmentation)."""
    return [list(a.columns) for a in spec.attributes if a.kind == CATEGORICAL]


def table_fingerprint(spec: AttributeSpec, table: CustomerTable) -> dict[str, Any]:
    """Rows and a content hash of the chosen attribute columns (a profile-only bundle's data fingerprint)."""
    import hashlib

    chosen = table.frame[list(spec.names)].astype(str).reset_index()
    hashed = pd.util.hash_pandas_object(chosen, index=False)
    return {
        "rows": int(len(table)),
        "customers": int(len(table)),
        "attributes": list(spec.names),
        "sha256": hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest(),
    }
