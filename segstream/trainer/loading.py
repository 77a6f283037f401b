"""Read transaction files (CSV or Parquet) into raw canonical columns, and write tables back.

Loading does not judge values: it renames columns to the canonical names, derives what is missing and
keeps values as the file holds them (CSV cells stay strings), so :mod:`segstream.trainer.cleaning` can
count every bad value. The index of the returned frame is the 1-based data row number (named ``row``),
which is what error messages and the cleaning report quote.

Column mapping: ``mapping`` is canonical name -> source column. Without it, a canonical column is also
found under a differently spelled name ("Customer ID", "customerId" -> ``customer_id``) when exactly one
column matches. A file column already named like a mapping target is kept as ``<name>_unmapped``.

Event ids: a file without an ``event_id`` column gets one derived from the whole row content (sha1 of
all values), so the same row always gets the same id, also across files and replays, and rows that are
exact duplicates are treated as one event delivered twice (cleaning keeps the first).

Preset ``online-retail``: invoice line items in the UCI Online Retail style become one event per
invoice (see :func:`_online_retail`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from segstream.trainer.errors import DataFileError

REQUIRED = ("event_id", "customer_id", "timestamp", "amount")
OPTIONAL = ("quantity", "currency", "channel", "store_id", "category", "lines")
CANONICAL = REQUIRED + OPTIONAL
PRESETS = ("online-retail",)
_CSV = (".csv", ".csv.gz")
_PARQUET = (".parquet", ".pq")

# Preset field -> accepted source column names (both UCI Online Retail I and II spellings).
_RETAIL_FIELDS: dict[str, tuple[str, ...]] = {
    "invoice": ("Invoice", "InvoiceNo"),
    "quantity": ("Quantity",),
    "invoice_date": ("InvoiceDate",),
    "price": ("Price", "UnitPrice"),
    "customer_id": ("Customer ID", "CustomerID"),
    "stock_code": ("StockCode",),
    "description": ("Description",),
    "country": ("Country",),
}
_RETAIL_REQUIRED = ("invoice", "quantity", "invoice_date", "price", "customer_id")
# Month first as in the UCI files; day first is tried only for values month-first cannot parse.
_NAIVE_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%y %H:%M", "%d/%m/%Y %H:%M",
                  "%d/%m/%Y %H:%M:%S", "%d.%m.%Y %H:%M")


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_CSV):
        return "csv"
    if name.endswith(_PARQUET):
        return "parquet"
    raise DataFileError(f"file {path}: unknown format {path.suffix or '(no extension)'!r}; "
                        "expected .csv, .csv.gz, .parquet or .pq")


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _read(path: Path) -> pd.DataFrame:
    kind = _kind(path)
    if not path.exists():
        raise DataFileError(f"file {path}: no such file")
    if path.is_dir():
        raise DataFileError(f"file {path}: is a directory, not a file")
    try:
        if kind == "parquet":
            try:
                df = pd.read_parquet(path)
            except Exception as exc:  # pyarrow raises many types for corrupt files; all mean the same here
                raise DataFileError(f"file {path}: not a readable Parquet file ({exc})") from None
        else:
            opts = {"dtype": str, "keep_default_na": False, "na_values": [""]}
            try:
                df = pd.read_csv(path, encoding="utf-8-sig", **opts)
            except UnicodeDecodeError:
                # Retail exports (the UCI files among them) are often Latin-1.
                df = pd.read_csv(path, encoding="latin-1", **opts)
    except pd.errors.EmptyDataError:
        raise DataFileError(f"file {path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataFileError(f"file {path}: not a valid CSV file ({exc})") from None
    except OSError as exc:
        raise DataFileError(f"file {path}: cannot read ({exc.strerror or exc})") from None
    if len(df) == 0:
        raise DataFileError(f"file {path}: no data rows (columns: {', '.join(map(str, df.columns))})")
    df.columns = [str(c).strip() for c in df.columns]
    df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    return df


def _find(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    """The column called one of ``names``, or the only one spelled like one of them."""
    for name in names:
        if name in df.columns:
            return name
    wanted = {_norm(n) for n in names}
    hits = [c for c in df.columns if _norm(c) in wanted]
    return hits[0] if len(hits) == 1 else None


def _apply_mapping(df: pd.DataFrame, where: str, mapping: dict[str, str], allowed: tuple[str, ...]
                   ) -> dict[str, str]:
    """Check ``mapping`` against the file; return canonical -> source column."""
    resolved: dict[str, str] = {}
    for target, source in mapping.items():
        if target not in allowed:
            raise DataFileError(f"{where}: --map {target}={source}: {target!r} is not a column name "
                                f"segstream knows (known: {', '.join(allowed)})")
        if source not in df.columns:
            raise DataFileError(f"{where}: column {source!r} given in --map {target}={source} is not "
                                f"in the {_noun(where)} (columns: {', '.join(df.columns)})")
        resolved[target] = source
    return resolved


def _noun(where: str) -> str:
    return "result" if where.startswith("query") else "file"


def _missing(where: str, column: str, df: pd.DataFrame, hint: str) -> DataFileError:
    return DataFileError(f"{where}: required column {column} is missing (columns: "
                         f"{', '.join(df.columns)}); {hint}")


def derive_event_ids(df: pd.DataFrame) -> pd.Series:
    """Event ids from the whole row content: identical rows get the same id, in any file or order.

    Args:
        df: rows without an ``event_id`` column.

    Returns:
        A string Series ("h" + 20 hex digits of sha1 over the values in sorted column order).
    """
    joined = pd.Series("", index=df.index, dtype=object)
    for col in sorted(df.columns):
        joined = joined + "\x1f" + df[col].astype(object).where(df[col].notna(), "").astype(str)
    digests = ["h" + hashlib.sha1(v.encode(), usedforsecurity=False).hexdigest()[:20] for v in joined]
    return pd.Series(digests, index=df.index, dtype="str")


def iso_utc(stamps: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Timestamps as ISO 8601 strings in UTC with an explicit offset, e.g. ``2025-03-01T10:15:00+00:00``.

    Naive values are taken as UTC; sub-second digits appear only if some value has them.
    """
    idx = pd.DatetimeIndex(stamps)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    values: np.ndarray = np.asarray(idx.tz_localize(None), dtype="datetime64[ns]")
    whole = values[~idx.isna()].astype("int64") % 1_000_000_000 == 0
    unit: Literal["s", "ms"] = "s" if whole.all() else "ms"
    text = np.datetime_as_string(values, unit=unit)
    out = np.strings.add(text, "+00:00")
    return np.where(idx.isna(), "", out)


def _parse_naive(values: pd.Series) -> pd.Series:
    """Parse ISO and common spreadsheet date formats; naive times are UTC. Unparseable -> NaT."""
    parsed = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
    for fmt in _NAIVE_FORMATS:
        todo = parsed.isna() & values.notna()
        if not todo.any():
            break
        parsed[todo] = pd.to_datetime(values[todo], format=fmt, errors="coerce", utc=True)
    return parsed


def _online_retail(df: pd.DataFrame, where: str, mapping: dict[str, str]) -> pd.DataFrame:
    """Invoice lines -> one event per invoice.

    ``amount`` is the sum of Quantity x Price over the lines (rounded to cents), ``quantity`` the sum of
    Quantity, ``category`` the Description (or StockCode) of the invoice's largest line, ``country`` and
    other columns come from the first line, ``line_count`` counts the lines. An invoice starting with "C" or
    with a negative total quantity is a cancellation and becomes a return (negative amount and quantity).
    ``event_id`` is the invoice number. If any line's Quantity or Price cannot be parsed, the invoice's
    amount is that raw value, so cleaning counts the invoice as unparseable.
    """
    cols = _apply_mapping(df, where, mapping, tuple(_RETAIL_FIELDS))
    for field, names in _RETAIL_FIELDS.items():
        if field not in cols and (found := _find(df, names)) is not None:
            cols[field] = found
    for field in _RETAIL_REQUIRED:
        if field not in cols:
            alternatives = " or ".join(repr(n) for n in _RETAIL_FIELDS[field])
            hint = f"the online-retail preset needs it (or --map {field}=<column>)"
            raise _missing(where, alternatives, df, hint)
    text = {f: df[c].astype("str").str.strip() for f, c in cols.items()}
    codes, _ = pd.factorize(text["invoice"], use_na_sentinel=False)
    k = codes.max() + 1
    first = np.unique(codes, return_index=True)[1]

    qty = pd.to_numeric(text["quantity"], errors="coerce").to_numpy(dtype=float)
    price = pd.to_numeric(text["price"], errors="coerce").to_numpy(dtype=float)
    line = qty * price
    bad = ~np.isfinite(line)
    amount = np.round(np.bincount(codes, weights=np.where(bad, 0.0, line), minlength=k), 2)
    quantity = np.bincount(codes, weights=np.nan_to_num(qty), minlength=k)
    invoice = text["invoice"].to_numpy(dtype=object)[first]
    cancel = pd.Series(invoice, dtype="str").str.upper().str.startswith("C").to_numpy(dtype=bool)
    cancel = cancel | (quantity < 0)
    amount = np.where(cancel, -np.abs(amount), amount).astype(object)
    quantity = np.where(cancel, -np.abs(quantity), quantity)
    if np.array_equal(quantity, np.round(quantity)):
        quantity = quantity.astype(np.int64)
    bad_pos = np.flatnonzero(bad)
    bad_codes, at = np.unique(codes[bad_pos], return_index=True)
    raw_bad = np.where(np.isnan(price[bad_pos[at]]), text["price"].to_numpy(dtype=object)[bad_pos[at]],
                       text["quantity"].to_numpy(dtype=object)[bad_pos[at]])
    amount[bad_codes] = raw_bad

    label = text.get("description", text.get("stock_code"))
    main = np.lexsort((-np.abs(np.nan_to_num(line)), codes))
    main = main[np.unique(codes[main], return_index=True)[1]]
    dates = text["invoice_date"].iloc[first].reset_index(drop=True)
    parsed = _parse_naive(dates)
    stamp = np.where(parsed.isna(), dates.to_numpy(dtype=object), iso_utc(parsed))
    customer = text["customer_id"].iloc[first].str.replace(r"^(\d+)\.0+$", r"\1", regex=True)

    out = pd.DataFrame({
        "event_id": pd.array(invoice, dtype="str"),
        "customer_id": customer.to_numpy(),
        "timestamp": stamp,
        "amount": amount,
        "quantity": quantity,
    })
    if label is not None:
        out["category"] = label.iloc[main].to_numpy()
    used = set(cols.values())
    for col in df.columns:
        if col not in used:
            out[col] = df[col].iloc[first].to_numpy()
    if "country" in cols:
        out["country"] = text["country"].iloc[first].to_numpy()
    out["line_count"] = np.bincount(codes, minlength=k)
    out.index = pd.Index(first + 1, name="row")
    return out


def load_transactions(path: str | Path, mapping: dict[str, str] | None = None, preset: str | None = None
                      ) -> pd.DataFrame:
    """Read a CSV or Parquet transaction file into the canonical columns, values still raw.

    Args:
        path: the file; the format follows the extension (.csv, .csv.gz, .parquet, .pq).
        mapping: canonical name -> column in the file (``--map amount=Betrag``). With a preset, the keys
            are the preset's field names (for online-retail: invoice, quantity, invoice_date, price,
            customer_id, stock_code, description, country).
        preset: ``"online-retail"`` for invoice line items, or None.

    Returns:
        Canonical columns first (required, then the optional ones present), other columns after; the
        index is the 1-based data row number named ``row``.

    Raises:
        DataFileError: nonexistent, empty, corrupt or unknown-format file, unknown preset, a bad mapping
            or a missing required column. The message names the file and the column.
    """
    path = Path(path)
    if preset is not None and preset not in PRESETS:
        raise DataFileError(f"file {path}: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    return canonical(_read(path), f"file {path}", mapping, preset)


def column_sources(df: pd.DataFrame, where: str, mapping: dict[str, str] | None = None) -> dict[str, str]:
    """Canonical name -> the source column renamed to it (``--map`` first, then a column spelled like the
    name); a column already called by its canonical name is not listed. Only the columns of ``df`` are read.

    Raises:
        DataFileError: a bad mapping.
    """
    cols = _apply_mapping(df, where, dict(mapping or {}), CANONICAL)
    for name in CANONICAL:
        if name in cols or name in df.columns:
            continue
        found = _find(df, (name,))
        if found is not None and found not in cols.values():
            cols[name] = found
    return cols


def canonical(df: pd.DataFrame, where: str, mapping: dict[str, str] | None = None, preset: str | None = None
              ) -> pd.DataFrame:
    """Rename a raw table (a file's rows or a query's result) to the canonical columns; see the module doc.

    Args:
        df: the rows, index = 1-based row number.
        where: names the source in messages (``file orders.csv``, ``query on duckdb:///x.duckdb``).
        mapping, preset: as for :func:`load_transactions`.

    Raises:
        DataFileError: unknown preset, a bad mapping or a missing required column.
    """
    mapping = dict(mapping or {})
    if preset is not None and preset not in PRESETS:
        raise DataFileError(f"{where}: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    if preset == "online-retail":
        df = _online_retail(df, where, mapping)
    else:
        cols = column_sources(df, where, mapping)
        clashes = {n: f"{n}_unmapped" for n, src in cols.items() if n in df.columns and src != n}
        df = df.rename(columns=clashes).rename(columns={src: name for name, src in cols.items()})
    for name in REQUIRED[1:]:
        if name not in df.columns:
            raise _missing(where, repr(name), df, f"use --map {name}=<column> to name it")
    if "event_id" not in df.columns:
        df.insert(0, "event_id", derive_event_ids(df))
    order = [c for c in CANONICAL if c in df.columns] + [c for c in df.columns if c not in CANONICAL]
    return df[order]


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as CSV or Parquet by the extension of ``path`` (no index column).

    In CSV, timezone-aware timestamp columns are written as ISO 8601 with offset (``...T10:15:00+00:00``).

    Raises:
        DataFileError: unknown extension or the file cannot be written.
    """
    path = Path(path)
    kind = _kind(path)
    try:
        if kind == "parquet":
            df.to_parquet(path, index=False)
        else:
            out = df.copy()
            for col in out.columns:
                if isinstance(out[col].dtype, pd.DatetimeTZDtype):
                    out[col] = iso_utc(out[col])
            out.to_csv(path, index=False)
    except OSError as exc:
        raise DataFileError(f"file {path}: cannot write ({exc.strerror or exc})") from None
    except (TypeError, ValueError) as exc:  # pyarrow's type errors on mixed object columns
        raise DataFileError(f"file {path}: cannot write ({exc})") from None
