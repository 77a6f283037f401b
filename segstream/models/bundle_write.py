"""Writing model bundles atomically.

A bundle is a directory::

    <bundle>/manifest.json        canonical JSON, see bundle_manifest.py
    <bundle>/signature            optional: "hmac-sha256 <hex>" over the manifest.json bytes
    <bundle>/<artifact>.joblib    one joblib pickle per artifact
    <bundle>/<extra files>        optional non-pickle files (JSON, CSV, Parquet, PNG...), hashed too

Everything goes to a temporary directory beside the target first and is renamed into place, so a reader
never sees half a bundle.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from segstream.models.bundle_manifest import (
    ARTIFACT_SUFFIX,
    FORMAT_VERSION,
    MANIFEST_NAME,
    PICKLE_SUFFIXES,
    SIGNATURE_NAME,
    BundleManifest,
    FileEntry,
    canonical_json,
    check_name,
    library_versions,
    new_version_id,
    signature_text,
    to_jsonable,
)
from segstream.models.errors import BundleError


def write_bundle(
    out_dir: Path,
    artifacts: Mapping[str, object],
    *,
    feature_spec: Mapping[str, Any],
    data_fingerprint: Mapping[str, Any],
    metrics: Mapping[str, Any],
    info: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    signing_key: bytes | None = None,
) -> BundleManifest:
    """Write a bundle into ``out_dir`` atomically.

    Everything is written to a temporary directory beside ``out_dir`` and renamed into place, so readers
    see either no bundle or a complete one.

    Args:
        out_dir: Bundle directory to create; it must not exist or be an empty directory.
        artifacts: Artifact name -> object to pickle as ``<name>.joblib``.
        feature_spec: Feature spec as a dict; must hold ``hash`` (e.g. ``FEATURE_SPEC.to_dict()``).
        data_fingerprint: Fingerprint of the training data (e.g. ``{"rows": .., "sha256": ..}``).
        metrics: Nested evaluation metrics (JSON-able; NaN/inf are stored as null).
        info: Free-form JSON-able information (e.g. segment names).
        extra_files: File name -> bytes for non-pickle extras (tables, plots).
        signing_key: When given, an HMAC-SHA256 ``signature`` file is written.

    Returns:
        The manifest written.

    Raises:
        BundleError: Bad names, non-JSON-able metadata, or ``out_dir`` exists and is not empty.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        # mkdtemp makes the directory private (0700); the worker and dashboard may run as other users.
        os.chmod(tmp, 0o755)  # noqa: S103
        manifest = _write_contents(
            tmp,
            artifacts,
            feature_spec,
            data_fingerprint,
            metrics,
            info or {},
            extra_files or {},
            signing_key,
        )
        _check_target(out_dir)
        try:
            # rename(2) replaces an empty directory atomically and fails on a non-empty one.
            os.rename(tmp, out_dir)
        except OSError as exc:
            raise BundleError(f"{out_dir}: cannot move the new bundle into place ({exc})") from exc
        fsync_dir(out_dir.parent)
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bundle_in_root(models_root: Path, artifacts: Mapping[str, object], **kwargs: Any) -> Path:
    """Write a bundle as ``<models_root>/<version>/`` (the models-root convention).

    Args:
        models_root: The models root directory (created if missing).
        artifacts: As for :func:`write_bundle`.
        **kwargs: The keyword arguments of :func:`write_bundle`.

    Returns:
        The new bundle directory.
    """
    models_root = Path(models_root)
    models_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=models_root))
    try:
        manifest = write_bundle(staging / "bundle", artifacts, **kwargs)
        final = models_root / manifest.version
        _check_target(final)
        os.rename(staging / "bundle", final)
        fsync_dir(models_root)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_target(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise BundleError(f"{out_dir}: exists and is not a directory; choose another bundle directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise BundleError(f"{out_dir}: directory is not empty; bundles are never overwritten")


def _write_contents(
    tmp: Path,
    artifacts: Mapping[str, object],
    feature_spec: Mapping[str, Any],
    data_fingerprint: Mapping[str, Any],
    metrics: Mapping[str, Any],
    info: Mapping[str, Any],
    extra_files: Mapping[str, bytes],
    signing_key: bytes | None,
) -> BundleManifest:
    import joblib

    if not artifacts:
        raise BundleError("a bundle needs at least one artifact")
    spec = to_jsonable(feature_spec, "feature_spec")
    if not isinstance(spec.get("hash"), str):
        raise BundleError("feature_spec must hold the spec 'hash' as a string (e.g. FEATURE_SPEC.to_dict())")
    reserved = {MANIFEST_NAME, SIGNATURE_NAME}
    entries: dict[str, FileEntry] = {}
    for name, obj in artifacts.items():
        check_name(name, "artifact")
        file_name = name + ARTIFACT_SUFFIX
        joblib.dump(obj, tmp / file_name)
        entries[name] = _entry_for(tmp / file_name)
    files: dict[str, FileEntry] = {}
    taken = reserved | {e.file for e in entries.values()}
    for file_name, data in extra_files.items():
        check_name(file_name, "extra file")
        if file_name in taken or Path(file_name).suffix in PICKLE_SUFFIXES:
            raise BundleError(f"extra file name {file_name!r} clashes with a reserved or pickle file name")
        _write_synced(tmp / file_name, bytes(data))
        files[file_name] = _entry_for(tmp / file_name)
    created = datetime.now(UTC)
    body: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created_at": created.isoformat(),
        "libraries": library_versions(),
        "feature_spec": spec,
        "data_fingerprint": to_jsonable(data_fingerprint, "data_fingerprint"),
        "artifacts": {n: asdict(e) for n, e in entries.items()},
        "files": {n: asdict(e) for n, e in files.items()},
        "metrics": to_jsonable(metrics, "metrics"),
        "info": to_jsonable(info, "info"),
    }
    body["version"] = new_version_id(created, body)
    manifest = BundleManifest.from_bytes(canonical_json(body), source=tmp / MANIFEST_NAME)
    raw = manifest.to_bytes()
    _write_synced(tmp / MANIFEST_NAME, raw)
    if signing_key is not None:
        _write_synced(tmp / SIGNATURE_NAME, signature_text(raw, signing_key).encode("ascii"))
    fsync_dir(tmp)
    return manifest


def _entry_for(file_path: Path) -> FileEntry:
    data = file_path.read_bytes()
    with open(file_path, "rb+") as fh:
        os.fsync(fh.fileno())
    return FileEntry(file=file_path.name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _write_synced(file_path: Path, data: bytes) -> None:
    with open(file_path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry to disk, so a rename in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
