"""The models root: bundles side by side and an atomically switched ``current`` pointer.

Layout::

    <models_root>/20251231T101500Z-1a2b3c4d/   a bundle (see bundle_write.py)
    <models_root>/20260102T080000Z-5e6f7a8b/   another bundle
    <models_root>/current -> 20260102T080000Z-5e6f7a8b   relative symlink

:func:`promote` verifies a bundle and then swaps ``current`` with one ``os.replace`` of a fresh symlink,
so a reader (the worker polling :func:`current_version`) sees the old or the new bundle, never neither.
Old bundles are kept, which makes a rollback just another promote.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from segstream.models.bundle_manifest import MANIFEST_NAME, BundleManifest
from segstream.models.bundle_verify import read_manifest, verify_bundle
from segstream.models.bundle_write import fsync_dir
from segstream.models.errors import BundleError

CURRENT_NAME = "current"


@dataclass(frozen=True)
class PromoteResult:
    """What :func:`promote` switched.

    Attributes:
        previous: Version ``current`` pointed to before, or ``None`` if there was none (or it was broken).
        version: Version ``current`` points to now.
        path: The promoted bundle directory.
    """

    previous: str | None
    version: str
    path: Path


@dataclass(frozen=True)
class BundleEntry:
    """One bundle directory found under a models root.

    Attributes:
        path: The bundle directory.
        manifest: Its manifest, or ``None`` when it could not be read.
        error: Why the manifest could not be read, else ``None``.
        is_current: Whether ``current`` points here.
    """

    path: Path
    manifest: BundleManifest | None
    error: str | None
    is_current: bool


def promote(
    bundle_dir: Path,
    models_root: Path | None = None,
    *,
    expected_feature_hash: str | None = None,
    signing_key: bytes | None = None,
    require_signature: bool = False,
) -> PromoteResult:
    """Verify a bundle and atomically point ``<models_root>/current`` at it.

    Args:
        bundle_dir: The bundle to promote.
        models_root: Where ``current`` lives; defaults to the bundle's parent directory.
        expected_feature_hash: As for :func:`~segstream.models.bundle_verify.verify_bundle`.
        signing_key: As for :func:`~segstream.models.bundle_verify.verify_bundle`.
        require_signature: As for :func:`~segstream.models.bundle_verify.verify_bundle`.

    Returns:
        The previous and new versions.

    Raises:
        BundleError: The bundle fails verification (``current`` is left untouched), or ``current``
            exists and is not a symlink.
    """
    bundle_dir = Path(bundle_dir).resolve()
    root = (Path(models_root) if models_root is not None else bundle_dir.parent).resolve()
    manifest = verify_bundle(
        bundle_dir,
        expected_feature_hash=expected_feature_hash,
        signing_key=signing_key,
        require_signature=require_signature,
    )
    if not root.is_dir():
        raise BundleError(f"{root}: models root does not exist")
    pointer = root / CURRENT_NAME
    if pointer.exists() and not pointer.is_symlink():
        raise BundleError(f"{pointer}: exists and is not a symlink; refusing to replace it")
    try:
        previous: str | None = current_version(root)
    except BundleError:
        previous = None  # a broken pointer is exactly what a promote repairs
    tmp = root / f".{CURRENT_NAME}.tmp-{uuid.uuid4().hex}"
    os.symlink(os.path.relpath(bundle_dir, root), tmp)
    try:
        os.replace(tmp, pointer)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"{pointer}: cannot switch the current pointer ({exc})") from exc
    fsync_dir(root)
    return PromoteResult(previous=previous, version=manifest.version, path=bundle_dir)


def resolve_current(models_root: Path) -> Path:
    """The bundle directory ``<models_root>/current`` points to.

    Raises:
        BundleError: No models root, no ``current`` pointer, or it points nowhere.
    """
    pointer = Path(models_root) / CURRENT_NAME
    if not Path(models_root).is_dir():
        raise BundleError(f"{models_root}: models root does not exist")
    if not pointer.is_symlink() and not pointer.exists():
        raise BundleError(f"{pointer}: no current bundle; run 'segstream promote BUNDLE_DIR' first")
    target = pointer.resolve()
    if not target.is_dir():
        raise BundleError(f"{pointer}: points to {target}, which is not a directory")
    return target


def current_version(models_root: Path) -> str | None:
    """The version ``current`` points to, cheaply (one readlink and one small JSON read), for polling.

    Returns:
        The version id, or ``None`` when there is no ``current`` pointer yet.

    Raises:
        BundleError: ``current`` exists but its target or manifest is broken.
    """
    pointer = Path(models_root) / CURRENT_NAME
    if not pointer.is_symlink() and not pointer.exists():
        return None
    return read_manifest(resolve_current(models_root)).version


def list_bundles(models_root: Path) -> list[BundleEntry]:
    """Bundle directories under a models root, oldest version first (unreadable ones last).

    A directory counts as a bundle when it holds ``manifest.json``; hidden (temporary) directories and the
    ``current`` pointer are skipped.
    """
    root = Path(models_root)
    if not root.is_dir():
        raise BundleError(f"{root}: models root does not exist")
    pointer = root / CURRENT_NAME
    current = pointer.resolve() if pointer.is_symlink() else None
    entries: list[BundleEntry] = []
    for child in root.iterdir():
        if child.name.startswith(".") or child.name == CURRENT_NAME or not child.is_dir():
            continue
        if not (child / MANIFEST_NAME).is_file():
            continue
        try:
            manifest: BundleManifest | None = read_manifest(child)
            error = None
        except BundleError as exc:
            manifest, error = None, str(exc)
        entries.append(BundleEntry(child, manifest, error, child.resolve() == current))
    entries.sort(key=lambda e: (e.manifest is None, e.manifest.version if e.manifest else e.path.name))
    return entries

