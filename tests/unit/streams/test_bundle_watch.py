"""Hot reload: a new bundle is swapped in between batches; a broken one is refused and the old one kept."""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import pytest

from segstream.streams import bundle_watch
from segstream.streams.bundle_watch import ModelHolder
from segstream.streams.errors import NoModelError
from segstream.streams.pipeline import BatchProcessor, PipelineConfig
from segstream.streams.state import MemoryStateStore
from tests.unit.streams.fakes import FakeProducer, RecencyScorer, event, make_bundle, records


def point_current_at(root, name):
    tmp = root / "current.tmp"
    os.symlink(name, tmp)
    os.replace(tmp, root / "current")


def test_no_bundle_means_no_model(tmp_path):
    holder = ModelHolder(tmp_path)
    assert holder.poll() == "none"
    with pytest.raises(NoModelError, match="no model bundle"):
        holder.require()


def test_swap_between_batches_and_outputs_carry_the_new_version(tmp_path):
    first = make_bundle(tmp_path, RecencyScorer(offset=0))
    holder = ModelHolder(tmp_path)
    assert holder.poll() == "swapped" and holder.poll() == "unchanged"
    v1 = holder.require().version
    assert first.name == v1
    producer = FakeProducer()
    proc = BatchProcessor(MemoryStateStore(), producer, holder, PipelineConfig())
    asyncio.run(proc.process(records(event("e1", "a", 0))))
    make_bundle(tmp_path, RecencyScorer(offset=5), names={5: "Five", 6: "Six"})
    assert holder.poll() == "swapped" and holder.swaps == 1
    v2 = holder.require().version
    assert v2 != v1
    asyncio.run(proc.process(records(event("e2", "a", 1))))
    scored = producer.values("transactions.scored")
    assert [(s["model_version"], s["segment"], s["segment_name"]) for s in scored] == [
        (v1, 0, "Active"), (v2, 5, "Five")]  # fmt: skip
    change = producer.values("segment-changes")[-1]
    assert (change["previous_segment"], change["segment"], change["model_version"]) == (0, 5, v2)


def test_a_broken_bundle_is_refused_logged_once_and_the_old_model_kept(tmp_path, caplog):
    good = make_bundle(tmp_path)
    holder = ModelHolder(tmp_path)
    holder.poll()
    broken = make_bundle(tmp_path, RecencyScorer(offset=1), do_promote=False)
    (broken / "serving.joblib").write_bytes(b"garbage")
    point_current_at(tmp_path, broken.name)
    with caplog.at_level("ERROR", logger="segstream.worker"):
        assert holder.poll() == "refused"
        assert holder.poll() == "refused"
    assert holder.require().version == good.name
    assert caplog.text.count("refused model bundle") == 1 and broken.name in caplog.text
    # the pointer moves back to a good bundle: nothing to swap, the old one is still active
    point_current_at(tmp_path, good.name)
    assert holder.poll() == "unchanged"


def test_a_bundle_for_other_features_is_refused(tmp_path):
    good = make_bundle(tmp_path)
    holder = ModelHolder(tmp_path)
    holder.poll()
    other = make_bundle(tmp_path, RecencyScorer(offset=2), do_promote=False)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["feature_spec"]["hash"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    point_current_at(tmp_path, other.name)
    assert holder.poll() == "refused"
    assert holder.require().version == good.name
    assert "feature" in next(iter(holder.refused.values())).lower()


def test_a_dangling_pointer_is_refused(tmp_path):
    good = make_bundle(tmp_path)
    holder = ModelHolder(tmp_path)
    holder.poll()
    point_current_at(tmp_path, "does-not-exist")
    assert holder.poll() == "refused"
    assert holder.require().version == good.name


def test_a_refused_bundle_repaired_in_place_is_tried_again(tmp_path, caplog):
    good = make_bundle(tmp_path)
    holder = ModelHolder(tmp_path)
    holder.poll()
    bundle = make_bundle(tmp_path, RecencyScorer(offset=1), do_promote=False)
    intact = (bundle / "serving.joblib").read_bytes()
    # A different size, so the repair below changes the file's stat whatever the timestamp granularity.
    (bundle / "serving.joblib").write_bytes(b"garbage")
    point_current_at(tmp_path, bundle.name)
    assert holder.poll() == "refused"
    assert holder.require().version == good.name
    (bundle / "serving.joblib").write_bytes(intact)
    with caplog.at_level("INFO", logger="segstream.worker"):
        assert holder.poll() == "swapped"
    assert holder.require().version == bundle.name  # same version id that was refused before
    assert f"model bundle {bundle.name} loaded" in caplog.text


def test_an_intact_copy_of_a_refused_version_is_loaded(tmp_path):
    good = make_bundle(tmp_path)
    holder = ModelHolder(tmp_path)
    holder.poll()
    bundle = make_bundle(tmp_path, RecencyScorer(offset=1), do_promote=False)
    corrupted = tmp_path / f"{bundle.name}-bad-copy"
    shutil.copytree(bundle, corrupted)
    (corrupted / "serving.joblib").write_bytes(b"garbage")
    point_current_at(tmp_path, corrupted.name)
    assert holder.poll() == "refused" and holder.require().version == good.name
    point_current_at(tmp_path, bundle.name)  # the intact bundle of the same version is promoted
    assert holder.poll() == "swapped" and holder.require().version == bundle.name


def test_an_unchanged_refused_bundle_is_not_reloaded(tmp_path, monkeypatch, caplog):
    make_bundle(tmp_path)
    holder = ModelHolder(tmp_path)
    holder.poll()
    broken = make_bundle(tmp_path, RecencyScorer(offset=1), do_promote=False)
    (broken / "serving.joblib").write_bytes(b"garbage")
    point_current_at(tmp_path, broken.name)
    loads = []
    real_load = bundle_watch.load_active

    def counting_load(path, **kwargs):
        loads.append(path)
        return real_load(path, **kwargs)

    monkeypatch.setattr(bundle_watch, "load_active", counting_load)
    with caplog.at_level("ERROR", logger="segstream.worker"):
        assert [holder.poll() for _ in range(4)] == ["refused"] * 4
    assert loads == [broken.resolve()]
    assert caplog.text.count("refused model bundle") == 1
    assert len(holder.refused) == 1


def test_waiting_for_a_model_says_where_and_how_to_fix_it(tmp_path, caplog):
    root = tmp_path / "models"
    holder = ModelHolder(root)

    async def wait_briefly():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(holder.wait_ready(0.01), 0.1)

    with caplog.at_level("WARNING", logger="segstream.worker"):
        asyncio.run(wait_briefly())
    assert caplog.text.count("waiting for a model") == 1
    assert f"no model bundle at {root}/current" in caplog.text
    assert "segstream promote DIR" in caplog.text and "segstream train" in caplog.text
    assert f"SEGSTREAM_MODEL_ROOT={root}" in caplog.text
