"""Hot reload: a new bundle is swapped in between batches; a broken one is refused and the old one kept."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

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
