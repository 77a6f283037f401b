"""A history from 1997 goes through ``segstream train`` and ``segstream replay`` with exact parity.

Until the one event contract, cleaning kept such a file and the worker dead-lettered every event of it
(a 2000-01-01 floor of its own). Here the CLI's replay sends the file, the worker accepts every event, and
the streamed features and segments equal the batch recomputation over the same file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.models.bundle import load_bundle, promote, resolve_current
from segstream.models.customer_state import aggregates_matrix
from segstream.models.features import FEATURE_SPEC, batch_features, features_from_aggregates
from segstream.models.serving import SERVING
from segstream.streams.state import open_store
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.generate import generate_transactions
from segstream.trainer.loading import write_table
from segstream.trainer.pipeline import TrainOptions, train_bundle
from tests.integration.worker_support import WorkerEnv, done_count, read_topic, stop, wait_until

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

    env = WorkerEnv(embedded_stack, root, tmp_path)
    env.create_topics(partitions=2)
    ids = list(events["event_id"])
    proc = env.start_worker()
    try:
        env.wait_http(proc)
        code = "from segstream.cli.main import main; main()"
        out = subprocess.run([sys.executable, "-c", code, "replay", str(data)], env=env.env(), capture_output=True,
                             text=True, timeout=180, cwd=tmp_path)  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "the worker accepts every row" in out.stdout and f"sent {len(ids):,} events" in out.stdout
        wait_until(lambda: done_count(redis_client, env.prefix, ids) == len(ids), 180, "every event done", proc,
                   env.log_text)  # fmt: skip
    finally:
        stop(proc)
    assert CliRunner().invoke(cli, ["rescore"], env=env.env()).exit_code == 0

    batch = batch_features(events)
    customers = list(batch.index)

    async def read_state():
        store = open_store(embedded_stack.redis_url, prefix=env.prefix)
        try:
            return await store.watermark(), await store.view(customers)
        finally:
            await store.close()

    watermark, views = asyncio.run(read_state())
    assert watermark == batch.attrs["as_of_ms"] < 883_612_800_000  # 1998-01-01
    stream_x = features_from_aggregates(aggregates_matrix([views[c].aggregates for c in customers]), watermark)
    assert np.array_equal(stream_x, batch.to_numpy())
    serving = load_bundle(resolve_current(root), expected_feature_hash=FEATURE_SPEC.hash, only=[SERVING]).artifact(
        SERVING)
    stored = np.array([views[c].segment.segment for c in customers])
    assert np.array_equal(stored, serving.predict_segments(batch.to_numpy()))
    assert read_topic(env.kafka, env.topics["dead_letters"], timeout=5) == []
