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
