"""A bundle's human-facing data, read without unpickling anything.

The trainer stores per-customer results, daily sales, forecasts and backtests as plain files beside the
pickled models; the report and the dashboard only need these, so they never run pickle code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from segstream.models.bundle import BundleManifest, verify_bundle

# File names written by the trainer (segstream.trainer.pipeline); kept here too so readers need not
# import the trainer.
CUSTOMERS_FILE = "customers.parquet"
DAILY_SALES_FILE = "daily_sales.csv"
FORECASTS_FILE = "forecasts.csv"
BACKTEST_FILE = "forecast_backtest.csv"
RULES_FILE = "tree_rules.txt"


@dataclass
class BundleTables:
    """Verified manifest plus lazily read tables of one bundle."""

    path: Path
    manifest: BundleManifest

    @classmethod
    def open(cls, path: Path | str) -> BundleTables:
        """Verify checksums (no unpickling) and return the bundle's readable side.

        Raises:
            BundleError: The bundle is missing, incomplete or tampered with.
        """
        path = Path(path).resolve()
        return cls(path, verify_bundle(path))

    @property
    def metrics(self) -> dict[str, Any]:
        """The manifest's metrics."""
        return self.manifest.metrics

    @property
    def segment_names(self) -> dict[int, str]:
        """Segment id -> human name."""
        return {int(k): str(v) for k, v in self.manifest.info.get("segment_names", {}).items()}

    @cached_property
    def customers(self) -> pd.DataFrame:
        """Per customer: features, segment, segment_name, pca_1, pca_2, predicted_spend_90d."""
        return pd.read_parquet(io.BytesIO(self._bytes(CUSTOMERS_FILE)))

    @cached_property
    def daily_sales(self) -> pd.DataFrame:
        """Long daily sales (date, series, sales) the models were trained on."""
        return _read_csv(self._bytes(DAILY_SALES_FILE), dates=("date",))

    @cached_property
    def forecasts(self) -> pd.DataFrame:
        """Final forecasts at training time (series, date, yhat, lower, upper, model, ...)."""
        return _read_csv(self._bytes(FORECASTS_FILE), dates=("date",))

    @cached_property
    def backtest(self) -> pd.DataFrame:
        """Held-out days with actuals and each model's prediction and band."""
        return _read_csv(self._bytes(BACKTEST_FILE), dates=("date",))

    @cached_property
    def rules_text(self) -> str:
        """The decision tree's rules as text."""
        return self._bytes(RULES_FILE).decode()

    def _bytes(self, name: str) -> bytes:
        return (self.path / self.manifest.files[name].file).read_bytes()


def _read_csv(raw: bytes, dates: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO(raw))
    for column in dates:
        frame[column] = pd.to_datetime(frame[column])
    return frame


def segment_overview(metrics: dict[str, Any], names: dict[int, str]) -> pd.DataFrame:
    """One row per segment: name, customers, share and the one-line description (manifest metrics)."""
    seg = metrics.get("segmentation", {})
    sizes = {int(k): int(v) for k, v in seg.get("sizes", {}).items()}
    about = {int(k): str(v) for k, v in seg.get("descriptions", {}).items()}
    total = sum(sizes.values()) or 1
    rows = [
        {"segment": s, "name": names.get(s, str(s)), "customers": n, "share": f"{n / total:.1%}",
         "description": about.get(s, "")}
        for s, n in sorted(sizes.items())
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["segment", "name", "customers", "share", "description"])


def criteria_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Every k-selection criterion per k searched, with the rule's mean rank (empty for the RFM map)."""
    seg = metrics.get("segmentation", {})
    ranks = seg.get("mean_rank_by_k", {})
    rows = []
    for k, crit in sorted(seg.get("criteria_by_k", {}).items(), key=lambda kv: int(kv[0])):
        rows.append({"k": int(k), **{c: round(float(v), 4) for c, v in crit.items()},
                     "mean rank": round(float(ranks[k]), 2) if k in ranks else None,
                     "chosen": "yes" if int(k) == seg.get("k") else ""})  # fmt: skip
    return pd.DataFrame(rows)


def rfm_crosstab_table(metrics: dict[str, Any], names: dict[int, str]) -> pd.DataFrame:
    """Customers of each segment (rows) in each RFM-map cell (columns)."""
    table = metrics.get("segmentation", {}).get("rfm_crosstab", {})
    frame = pd.DataFrame({f"{k} · {names.get(int(k), k)}": v for k, v in table.items()}).T.fillna(0).astype(int)
    return frame
