"""One check several tests make: a file replayed by the CLI through a real worker ends in exactly the
features and segments a batch recomputation over the same file gives."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.models.bundle import load_bundle, read_manifest, resolve_current
from segstream.models.customer_state import aggregates_matrix
from segstream.models.features import FeatureSpec, batch_features, features_from_aggregates
from segstream.models.preferences import batch_categories
from segstream.models.serving import SERVING
from segstream.streams.state import open_store
from tests.integration.worker_support import WorkerEnv, done_count, read_topic, stop, wait_until


def replay_and_compare(embedded_stack, redis_client, tmp_path: Path, data: Path | list[str], events: pd.DataFrame,
                       root: Path, partitions: int = 2, extra_env: dict[str, str] | None = None,
                       worker_env: dict[str, str] | None = None) -> dict:  # fmt: skip
    """Replay ``data`` with ``segstream replay`` into a worker scoring with ``root``'s current bundle; assert
    every event is done, nothing is dead-lettered, and stream state equals batch exactly.

    ``data`` is the file, or the replay command's arguments (``["--sql", QUERY, "--db", URL]``); ``extra_env``
    is added to the replay command's environment, ``worker_env`` to the worker's.

    Returns:
        ``{"watermark", "features", "segments"}`` of the stream, for further checks by the caller.
    """
    env = WorkerEnv(embedded_stack, root, tmp_path, extra=worker_env or {})
    env.create_topics(partitions=partitions)
    ids = list(zip(events["event_id"], events["customer_id"].astype(str), strict=True))
    proc = env.start_worker()
    try:
        env.wait_http(proc)
        code = "from segstream.cli.main import main; main()"
        args = [str(data)] if isinstance(data, Path) else list(data)
        out = subprocess.run([sys.executable, "-c", code, "replay", *args], env={**env.env(), **(extra_env or {})},
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "the worker accepts every row" in out.stdout and f"sent {len(ids):,} events" in out.stdout
        wait_until(lambda: done_count(redis_client, env.prefix, ids) == len(ids), 300, "every event done", proc,
                   env.log_text)  # fmt: skip
    finally:
        stop(proc)
    return {**check_parity(embedded_stack.redis_url, env, events, root), "env": env}


def check_parity(redis_url: str, env: WorkerEnv, events: pd.DataFrame, root: Path,
                 profiles: dict[str, dict] | None = None) -> dict:  # fmt: skip
    """After ``segstream rescore``, the stored features and segments equal the batch recomputation exactly.

    For a bundle that reads product preferences or attributes, the stored categories equal the batch fold's
    and the segments are those of the batch input rows (``profiles``: the attributes batch scoring uses).
    """
    result = CliRunner().invoke(cli, ["rescore"], env=env.env())
    assert result.exit_code == 0, result.output

    batch = batch_features(events)
    customers = list(batch.index)

    async def read_state():
        store = open_store(redis_url, prefix=env.prefix)
        try:
            return await store.watermark(), await store.view(customers)
        finally:
            await store.close()

    watermark, views = asyncio.run(read_state())
    assert watermark == batch.attrs["as_of_ms"]
    stream_x = features_from_aggregates(aggregates_matrix([views[c].aggregates for c in customers]), watermark)
    wrong = [customers[i] for i in np.nonzero((stream_x != batch.to_numpy()).any(axis=1))[0]]
    assert not wrong, f"{len(wrong)} customers' features differ from batch, e.g. {wrong[:5]}"
    target = resolve_current(root)
    expected = FeatureSpec.for_manifest(read_manifest(target).feature_spec)
    serving = load_bundle(target, expected_feature_hash=expected.hash, only=[SERVING]).artifact(SERVING)
    x = batch.to_numpy()
    if serving.needs_categories or serving.needs_attributes:
        totals = batch_categories(events)
        wrong = [c for c in customers if views[c].categories != totals.get(c, {})]
        assert not wrong, f"{len(wrong)} customers' categories differ from batch, e.g. {wrong[:5]}"
        x = serving.input_rows(x, categories=[totals.get(c, {}) for c in customers],
                               profiles=[(profiles or {}).get(c) for c in customers])  # fmt: skip
    stored = np.array([views[c].segment.segment for c in customers])
    wrong = [customers[i] for i in np.nonzero(stored != serving.predict_segments(x))[0]]
    assert not wrong, f"{len(wrong)} segments differ from batch scoring, e.g. {wrong[:5]}"
    assert read_topic(env.kafka, env.topics["dead_letters"], timeout=5) == []
    return {"watermark": watermark, "features": stream_x, "segments": stored}
