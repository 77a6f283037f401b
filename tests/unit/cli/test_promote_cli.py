"""``segstream promote``: the default root is the worker's (SEGSTREAM_MODEL_ROOT), bundles from elsewhere
are linked or copied in, and ``--models-root`` still overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.models.bundle import list_bundles, resolve_current, verify_bundle
from segstream.streams.bundle_watch import ModelHolder
from tests.unit.streams.fakes import make_bundle


@pytest.fixture
def worker_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The root the worker watches, set through the environment like a deployment does (not created yet)."""
    root = tmp_path / "worker" / "models"
    monkeypatch.setenv("SEGSTREAM_MODEL_ROOT", str(root))
    for name in ("SEGSTREAM_MODEL_SIGNING_KEY", "SEGSTREAM_MODEL_REQUIRE_SIGNATURE"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def trained_elsewhere(tmp_path: Path) -> Path:
    """A loadable bundle under a directory the worker does not watch."""
    return make_bundle(tmp_path / "laptop" / "bundles", do_promote=False)


def _promote(*args: str) -> object:
    return CliRunner().invoke(cli, ["promote", *args])


def test_promote_links_a_bundle_into_the_workers_root(worker_root: Path, trained_elsewhere: Path) -> None:
    result = _promote(str(trained_elsewhere))
    assert result.exit_code == 0, result.output
    entry = worker_root / trained_elsewhere.name
    assert entry.is_symlink() and os.readlink(entry) == str(trained_elsewhere.resolve()), "absolute link"
    assert os.readlink(worker_root / "current") == trained_elsewhere.name
    assert resolve_current(worker_root) == trained_elsewhere.resolve()
    assert f"current:  {trained_elsewhere.name}" in result.output
    assert f"{worker_root}/current -> {trained_elsewhere.resolve()}" in result.output
    assert "note:" not in result.output
    # what the issue was about: the worker watching that root now finds and loads the bundle
    holder = ModelHolder(worker_root)
    assert holder.poll() == "swapped" and holder.require().version == trained_elsewhere.name
    # promoting the same bundle again reuses the link instead of failing on it
    again = _promote(str(trained_elsewhere))
    assert again.exit_code == 0, again.output
    assert not [p for p in worker_root.iterdir() if p.name.startswith(".")], "temp pointer left behind"


def test_promote_copy_puts_a_full_copy_in_the_root(worker_root: Path, trained_elsewhere: Path) -> None:
    result = _promote(str(trained_elsewhere), "--copy")
    assert result.exit_code == 0, result.output
    entry = worker_root / trained_elsewhere.name
    assert entry.is_dir() and not entry.is_symlink()
    assert sorted(p.name for p in entry.iterdir()) == sorted(p.name for p in trained_elsewhere.iterdir())
    assert resolve_current(worker_root) == entry.resolve()
    assert f"{worker_root}/current -> {entry.resolve()}" in result.output
    assert not [p for p in worker_root.iterdir() if p.name.startswith(".")], "temp copy left behind"
    # the copy stands alone: the source can go away (another host, a cleaned-up laptop)
    for child in trained_elsewhere.iterdir():
        child.unlink()
    trained_elsewhere.rmdir()
    verify_bundle(resolve_current(worker_root))
    assert [e.path.name for e in list_bundles(worker_root)] == [entry.name]


def test_models_root_option_overrides_the_setting(tmp_path: Path, worker_root: Path, trained_elsewhere: Path) -> None:
    other = tmp_path / "other-root"
    result = _promote(str(trained_elsewhere), "--models-root", str(other))
    assert result.exit_code == 0, result.output
    assert resolve_current(other) == trained_elsewhere.resolve()
    assert not worker_root.exists()
    # the worker still watches the configured root: say so instead of leaving it waiting silently
    assert f"note: the worker watches SEGSTREAM_MODEL_ROOT={worker_root}" in result.output


def test_a_bundle_already_in_the_root_is_pointed_at_directly(worker_root: Path) -> None:
    inside = make_bundle(worker_root, do_promote=False)
    result = _promote(str(inside))
    assert result.exit_code == 0, result.output
    assert "linked:" not in result.output and "copied:" not in result.output
    assert os.readlink(worker_root / "current") == inside.name
    assert sorted(p.name for p in worker_root.iterdir()) == sorted([inside.name, "current"])


def test_a_broken_bundle_is_not_linked_in(worker_root: Path, trained_elsewhere: Path) -> None:
    (trained_elsewhere / "serving.joblib").write_bytes(b"garbage")
    result = _promote(str(trained_elsewhere))
    assert result.exit_code == 2 and "serving.joblib" in result.output
    assert not worker_root.exists() or not any(worker_root.iterdir())


def test_another_entry_of_the_same_name_is_not_overwritten(
    tmp_path: Path, worker_root: Path, trained_elsewhere: Path
) -> None:
    worker_root.mkdir(parents=True)
    squatter = worker_root / trained_elsewhere.name
    squatter.symlink_to(tmp_path)
    result = _promote(str(trained_elsewhere))
    assert result.exit_code == 2 and "already exists" in result.output
    assert os.readlink(squatter) == str(tmp_path) and not (worker_root / "current").exists()
