"""Model bundle format: round trip, every refusal before unpickling, signatures, promote and the CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.models import bundle_verify
from segstream.models.bundle import (
    BundleError,
    current_version,
    list_bundles,
    load_bundle,
    promote,
    read_manifest,
    resolve_current,
    verify_bundle,
    write_bundle,
    write_bundle_in_root,
)
from segstream.models.features import FEATURE_SPEC

KEY = b"test-signing-key"
FEATURE_HASH = FEATURE_SPEC.hash

# Set by unpickling a _Tripwire: proves whether a pickle was ever loaded.
TRIPPED: list[str] = []


def _trip(label: str) -> str:
    TRIPPED.append(label)
    return label


class _Tripwire:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_trip, ("unpickled",))


@pytest.fixture(autouse=True)
def _reset_tripwire() -> None:
    TRIPPED.clear()


def _write(out_dir: Path, *, key: bytes | None = None, artifacts: dict | None = None) -> Path:
    write_bundle(
        out_dir,
        artifacts if artifacts is not None else {"segmentation": {"centers": np.arange(6.0).reshape(3, 2)}},
        feature_spec=FEATURE_SPEC.to_dict(),
        data_fingerprint={"rows": 10, "sha256": "0" * 64},
        metrics={"segmentation": {"silhouette": np.float64(0.42), "k": np.int64(3)}},
        info={"segment_names": ["low", "mid", "high"]},
        extra_files={"daily_sales.csv": b"date,amount\n2025-01-01,3.5\n"},
        signing_key=key,
    )
    return out_dir


def _edit_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _flip_byte(path: Path, at: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_round_trip(tmp_path: Path) -> None:
    bundle = _write(tmp_path / "b", key=KEY)
    loaded = load_bundle(bundle, expected_feature_hash=FEATURE_HASH, signing_key=KEY, require_signature=True)
    np.testing.assert_array_equal(loaded.artifact("segmentation")["centers"], np.arange(6.0).reshape(3, 2))
    m = loaded.manifest
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", m.version)
    assert m == read_manifest(bundle)
    assert m.metrics == {"segmentation": {"silhouette": 0.42, "k": 3}}
    assert m.info["segment_names"] == ["low", "mid", "high"]
    assert m.feature_spec["names"] == list(FEATURE_SPEC.names)
    assert set(m.libraries) >= {"python", "numpy", "pandas", "scikit-learn", "joblib", "segstream"}
    assert m.created_at.endswith("+00:00")
    assert set(m.files) == {"daily_sales.csv"}
    assert sorted(p.name for p in bundle.iterdir()) == [
        "daily_sales.csv",
        "manifest.json",
        "segmentation.joblib",
        "signature",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp dir left behind"
    with pytest.raises(BundleError, match="no artifact 'forecast'"):
        loaded.artifact("forecast")


def test_non_finite_metrics_become_null(tmp_path: Path) -> None:
    write_bundle(
        tmp_path / "b",
        {"a": 1},
        feature_spec={"hash": "x"},
        data_fingerprint={},
        metrics={"silhouette": float("nan"), "ratio": float("inf"), "per_k": np.array([1.5, 2.5])},
    )
    assert read_manifest(tmp_path / "b").metrics == {"silhouette": None, "ratio": None, "per_k": [1.5, 2.5]}


_FINITE = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=25, deadline=None)
@given(
    metrics=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=10,
    )
)
def test_metrics_round_trip_exactly(tmp_path_factory: pytest.TempPathFactory, metrics: object) -> None:
    out = tmp_path_factory.mktemp("h") / "b"
    write_bundle(out, {"a": 1}, feature_spec={"hash": "x"}, data_fingerprint={}, metrics={"m": metrics})
    assert read_manifest(out).metrics == {"m": metrics}
    verify_bundle(out)


def test_tampered_artifact_refused_before_unpickling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = _write(tmp_path / "good", artifacts={"wire": _Tripwire()})
    load_bundle(good)
    assert TRIPPED == ["unpickled"], "the tripwire must fire when a bundle is really loaded"
    TRIPPED.clear()

    bad = _write(tmp_path / "bad", artifacts={"wire": _Tripwire()})
    _flip_byte(bad / "wire.joblib", at=len((bad / "wire.joblib").read_bytes()) // 2)

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("joblib.load called on an unverified bundle")

    monkeypatch.setattr(joblib, "load", no_unpickling)
    with pytest.raises(BundleError, match=r"wire\.joblib: artifact 'wire' sha256 does not match"):
        load_bundle(bad)
    assert TRIPPED == []


def test_missing_artifact_and_missing_extra_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a")
    (a / "segmentation.joblib").unlink()
    with pytest.raises(BundleError, match=r"segmentation\.joblib: artifact 'segmentation' .* missing"):
        verify_bundle(a)
    b = _write(tmp_path / "b")
    (b / "daily_sales.csv").unlink()
    with pytest.raises(BundleError, match=r"daily_sales\.csv: extra file .* missing"):
        verify_bundle(b)


def test_missing_manifest_and_missing_dir(tmp_path: Path) -> None:
    bundle = _write(tmp_path / "b")
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"manifest\.json: manifest file is missing"):
        verify_bundle(bundle)
    with pytest.raises(BundleError, match="does not exist"):
        verify_bundle(tmp_path / "nope")


@pytest.mark.parametrize("name", ["sneaky.joblib", "sneaky.pkl", "sneaky.pickle"])
def test_unexpected_pickle_file_refused(tmp_path: Path, name: str) -> None:
    bundle = _write(tmp_path / "b")
    joblib.dump(_Tripwire(), bundle / name)
    with pytest.raises(BundleError, match=f"unexpected pickle file '{re.escape(name)}'"):
        load_bundle(bundle)
    assert TRIPPED == []


def test_manifest_edits_are_caught(tmp_path: Path) -> None:
    hashed = _write(tmp_path / "hash")
    _edit_manifest(hashed, lambda d: d["artifacts"]["segmentation"].update(sha256="a" * 64))
    with pytest.raises(BundleError, match="sha256 does not match"):
        verify_bundle(hashed)

    sized = _write(tmp_path / "size")
    _edit_manifest(sized, lambda d: d["artifacts"]["segmentation"].update(size=1))
    with pytest.raises(BundleError, match="manifest says 1"):
        verify_bundle(sized)

    # A metrics edit changes no file hash: only the signature can catch it.
    signed = _write(tmp_path / "signed", key=KEY)
    _edit_manifest(signed, lambda d: d["metrics"].update(accuracy=1.0))
    verify_bundle(signed)
    with pytest.raises(BundleError, match="signature does not match"):
        verify_bundle(signed, signing_key=KEY)

    garbled = _write(tmp_path / "garbled")
    (garbled / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid UTF-8 JSON"):
        verify_bundle(garbled)

    traversal = _write(tmp_path / "traversal")
    _edit_manifest(traversal, lambda d: d["files"]["daily_sales.csv"].update(file="../../etc/passwd"))
    with pytest.raises(BundleError, match="must be a plain file name"):
        verify_bundle(traversal)


def test_unsupported_format_version(tmp_path: Path) -> None:
    bundle = _write(tmp_path / "b")
    _edit_manifest(bundle, lambda d: d.update(format_version=99))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        read_manifest(bundle)


def test_wrong_feature_hash(tmp_path: Path) -> None:
    bundle = _write(tmp_path / "b")
    verify_bundle(bundle, expected_feature_hash=FEATURE_HASH)
    with pytest.raises(BundleError, match="feature spec hash .* does not match"):
        load_bundle(bundle, expected_feature_hash="f" * 64)


def test_wrong_sklearn_version(tmp_path: Path) -> None:
    bundle = _write(tmp_path / "b", artifacts={"wire": _Tripwire()})
    _edit_manifest(bundle, lambda d: d["libraries"].update({"scikit-learn": "0.24.2"}))
    with pytest.raises(BundleError, match=r"pickled with scikit-learn 0\.24"):
        load_bundle(bundle)
    assert TRIPPED == []


def test_signature_required_but_missing(tmp_path: Path) -> None:
    unsigned = _write(tmp_path / "b")
    verify_bundle(unsigned)
    with pytest.raises(BundleError, match="not signed but a signing key is configured"):
        verify_bundle(unsigned, signing_key=KEY)
    with pytest.raises(BundleError, match="signature is required but no signing key"):
        verify_bundle(unsigned, require_signature=True)
    signed = _write(tmp_path / "s", key=KEY)
    (signed / "signature").unlink()
    with pytest.raises(BundleError, match="not signed"):
        verify_bundle(signed, signing_key=KEY, require_signature=True)


def test_wrong_key(tmp_path: Path) -> None:
    bundle = _write(tmp_path / "b", key=KEY, artifacts={"wire": _Tripwire()})
    with pytest.raises(BundleError, match=r"signature does not match \(wrong key"):
        load_bundle(bundle, signing_key=b"another key")
    assert TRIPPED == []
    load_bundle(bundle, signing_key=KEY)
    assert TRIPPED == ["unpickled"]


def test_write_refuses_to_overwrite_and_bad_names(tmp_path: Path) -> None:
    existing = _write(tmp_path / "b")
    before = (existing / "manifest.json").read_bytes()
    with pytest.raises(BundleError, match="not empty"):
        _write(existing)
    assert (existing / "manifest.json").read_bytes() == before
    (tmp_path / "empty").mkdir()
    verify_bundle(_write(tmp_path / "empty"))
    for bad in ("../escape", ".hidden", "a/b", ""):
        with pytest.raises(BundleError, match="not allowed"):
            _write(tmp_path / f"bad{len(bad)}", artifacts={bad: 1})
    with pytest.raises(BundleError, match="clashes"):
        write_bundle(
            tmp_path / "clash",
            {"a": 1},
            feature_spec={"hash": "x"},
            data_fingerprint={},
            metrics={},
            extra_files={"a.joblib": b""},
        )
    with pytest.raises(BundleError, match="feature_spec must hold"):
        write_bundle(tmp_path / "nohash", {"a": 1}, feature_spec={}, data_fingerprint={}, metrics={})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp dir left behind"


def _root_bundle(root: Path, value: int) -> Path:
    return write_bundle_in_root(
        root, {"segmentation": value}, feature_spec=FEATURE_SPEC.to_dict(), data_fingerprint={}, metrics={}
    )


def test_promote_switches_current_atomically(tmp_path: Path) -> None:
    root = tmp_path / "models"
    old, new = _root_bundle(root, 1), _root_bundle(root, 2)
    assert old.parent == root and old.name == read_manifest(old).version
    assert current_version(root) is None

    first = promote(old)
    assert (first.previous, first.version) == (None, old.name)
    second = promote(new, root, expected_feature_hash=FEATURE_HASH)
    assert (second.previous, second.version) == (old.name, new.name)
    assert os.readlink(root / "current") == new.name, "pointer must be relative"
    assert resolve_current(root) == new.resolve()
    assert current_version(root) == new.name
    assert load_bundle(resolve_current(root)).artifact("segmentation") == 2
    verify_bundle(old)  # the old bundle is kept for rollback
    assert [e.path.name for e in list_bundles(root)] == sorted([old.name, new.name])
    assert [e.is_current for e in list_bundles(root)] == [e.path == new for e in list_bundles(root)]
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "temp symlink left behind"


def test_promote_of_broken_bundle_keeps_old(tmp_path: Path) -> None:
    root = tmp_path / "models"
    good, broken, other = _root_bundle(root, 1), _root_bundle(root, 2), _root_bundle(root, 3)
    promote(good)
    _flip_byte(broken / "segmentation.joblib")
    with pytest.raises(BundleError, match="sha256 does not match"):
        promote(broken)
    assert current_version(root) == good.name
    with pytest.raises(BundleError, match="feature spec hash"):
        promote(other, expected_feature_hash="0" * 64)
    assert os.readlink(root / "current") == good.name


def test_resolve_current_errors_clearly(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="models root does not exist"):
        resolve_current(tmp_path / "missing")
    root = tmp_path / "models"
    root.mkdir()
    with pytest.raises(BundleError, match="no current bundle; run 'segstream promote"):
        resolve_current(root)
    (root / "current").symlink_to("gone")
    with pytest.raises(BundleError, match="not a directory"):
        resolve_current(root)
    with pytest.raises(BundleError):
        current_version(root)


def test_list_bundles_reports_broken_ones(tmp_path: Path) -> None:
    root = tmp_path / "models"
    good = _root_bundle(root, 1)
    (root / "junk").mkdir()
    (root / "junk" / "manifest.json").write_text("[]")
    (root / "not-a-bundle").mkdir()
    entries = list_bundles(root)
    assert [(e.path.name, e.manifest is None) for e in entries] == [(good.name, False), ("junk", True)]
    assert "must be a JSON object" in (entries[1].error or "")


def test_load_does_not_reread_files_after_verifying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bytes that are unpickled are the bytes that were hashed: swap the file after reading and
    # nothing changes.
    bundle = _write(tmp_path / "b", artifacts={"a": 1})
    real_read = bundle_verify._read

    def read_then_swap(path: Path, what: str) -> bytes:
        data = real_read(path, what)
        if path.name == "a.joblib":
            joblib.dump(_Tripwire(), path)
        return data

    monkeypatch.setattr(bundle_verify, "_read", read_then_swap)
    assert load_bundle(bundle).artifact("a") == 1
    assert TRIPPED == []


def _cli(*args: str) -> object:
    from segstream.cli.main import cli

    return CliRunner().invoke(cli, list(args))


def test_cli_promote_prints_versions_and_refuses_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("segstream.cli.bundle._signing_options", lambda: (None, False))
    root = tmp_path / "models"
    # promote defaults to the worker's root (SEGSTREAM_MODEL_ROOT), not the bundle's parent: set it here so
    # the test never writes into the working directory's .segstream/models.
    monkeypatch.setenv("SEGSTREAM_MODEL_ROOT", str(root))
    old, new = _root_bundle(root, 1), _root_bundle(root, 2)
    _cli("promote", str(old))
    result = _cli("promote", str(new), "--models-root", str(root))
    assert result.exit_code == 0, result.output
    assert f"previous: {old.name}" in result.output and f"current:  {new.name}" in result.output

    _flip_byte(old / "segmentation.joblib")
    result = _cli("promote", str(old))
    assert result.exit_code == 2
    assert "segmentation.joblib" in result.output and "sha256 does not match" in result.output
    assert current_version(root) == new.name

    assert _cli("bundle", "verify", str(new)).exit_code == 0
    assert _cli("bundle", "verify", str(old)).exit_code == 2
    listing = _cli("bundle", "list", str(root))
    assert listing.exit_code == 0 and f"* {new.name}" in listing.output
