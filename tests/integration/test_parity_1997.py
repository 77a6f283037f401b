"""A history from 1997 goes through ``segstream train`` and ``segstream replay`` with exact parity.

Until the one event contract, cleaning kept such a file and the worker dead-lettered every event of it
(a 2000-01-01 floor of its own). Here the CLI's replay sends the file, the worker accepts every event, and
the streamed features and segments equal the batch recomputation over the same file.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from segstream.models.bundle import promote
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.generate import generate_transactions
from segstream.trainer.loading import write_table
from segstream.trainer.pipeline import TrainOptions, train_bundle
from tests.integration.parity_support import replay_and_compare

pytestmark = pytest.mark.integration


def test_a_1997_history_replays_through_the_cli_with_exact_parity(embedded_stack, redis_client, tmp_path):
    raw = generate_transactions(300, 365, 4, end=dt.date(1997, 12, 31), dirty_fraction=0.0)
    data = tmp_path / "history-1997.csv"
    write_table(raw, data)
    events, report = clean_transactions(raw, "history-1997.csv")
    assert report.dropped_rows == 0
    assert events["timestamp"].max() < pd.Timestamp("1998-01-01", tz="UTC")
    root = tmp_path / "models"
    promote(train_bundle(events, root / "b1997", options=TrainOptions(k_range=range(3, 5), seed=4)).bundle_dir, root)

    result = replay_and_compare(embedded_stack, redis_client, tmp_path, data, events, root)
    assert result["watermark"] < 883_612_800_000  # 1998-01-01
