"""The models root: bundles side by side and an atomically switched ``current`` pointer.

Layout::

    <models_root>/20251231T101500Z-1a2b3c4d/   a bundle (see bundle_write.py)
    <models_root>/20260102T080000Z-5e6f7a8b/   another bundle
    <models_root>/current -> 20260102T080000Z-5e6f7a8b   relative symlink

:func:`promote` verifies a bundle and then swaps ``current`` with one ``os.replace`` of a fresh symlink,
so a reader (the worker polling :func:`current_version`) sees the old or the new bundle, never neither.
Old bundles are kept, which makes a rollback just another promote.

A bundle trained elsewhere is first made reachable inside the root, as ``<models_root>/<bundle dir name>``:
a symlink to its absolute path by default, or a full copy (``copy=True``) when the worker cannot see the
source path (another host or container). The copy is made under a hidden temporary name and renamed, so
the worker and :func:`list_bundles` never see half a bundle.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from segstream.models.bundle_manifest import MANIFEST_NAME, BundleManifest
from segstream.models.bundle_verify import read_manifest, verify_bundle
from segstream.models.bundle_write import fsync_dir
from segstream.models.errors import BundleError

CURRENT_NAME = "current"

Placement = Literal["inside", "linked", "copied", "reused"]


@dataclass(frozen=True)
class PromoteResult:
    """What :func:`promote` switched.

    Attributes:
        previous: Version ``current`` pointed to before, or ``None`` if there was none (or it was broken).
        version: Version ``current`` points to now.
        path: The bundle directory ``current`` resolves to now (for a copy: the copy, not the source).
        root: The models root holding ``current`` (absolute).
        entry: The name inside the root that ``current`` points to (``<root>/<name>``, or the bundle
            itself when it already lived under the root).
        placement: How the bundle got into the root: ``"inside"`` (it already was), ``"linked"`` (a new
            symlink), ``"copied"`` (a new copy) or ``"reused"`` (a link or copy from an earlier promote).
    """

    previous: str | None
    version: str
    path: Path
    root: Path | None = None
    entry: Path | None = None
    placement: Placement = "inside"


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
    copy: bool = False,
) -> PromoteResult:
    """Verify a bundle, make it reachable under the models root and atomically point ``current`` at it.

    A bundle outside ``models_root`` gets an entry ``<models_root>/<bundle dir name>``: a symlink to its
    absolute path, or with ``copy`` a full copy. An entry of that name left by an earlier promote of the
    same bundle is reused; any other entry of that name is an error (nothing is overwritten).

    Args:
        bundle_dir: The bundle to promote.
        models_root: Where ``current`` lives (created if missing); defaults to the bundle's parent directory.
        expected_feature_hash: As for :func:`~segstream.models.bundle_verify.verify_bundle`.
        signing_key: As for :func:`~segstream.models.bundle_verify.verify_bundle`.
        require_signature: As for :func:`~segstream.models.bundle_verify.verify_bundle`.
        copy: Copy a bundle from outside the root instead of linking it.

    Returns:
        The previous and new versions, and where ``current`` points now.

    Raises:
        BundleError: The bundle (or its copy) fails verification (``current`` is left untouched),
            ``current`` exists and is not a symlink, or the root holds another entry of the bundle's name.
    """
    source = Path(os.path.abspath(bundle_dir))  # symlinks kept: "<root>/<name>" may itself be a link
    root = (Path(models_root) if models_root is not None else source.resolve().parent).resolve()
    verify = {
        "expected_feature_hash": expected_feature_hash,
        "signing_key": signing_key,
        "require_signature": require_signature,
    }
    # Verify the source before touching the root: a broken bundle must not be linked or copied in.
    manifest = verify_bundle(source, **verify)
    root.mkdir(parents=True, exist_ok=True)
    pointer = root / CURRENT_NAME
    if pointer.exists() and not pointer.is_symlink():
        raise BundleError(f"{pointer}: exists and is not a symlink; refusing to replace it")
    entry, placement = _place(source, root, copy=copy)
    if placement == "copied":
        try:
            # The copy is what the worker will load: check it too, so a short write is caught here.
            manifest = verify_bundle(entry, **verify)
        except BundleError:
            shutil.rmtree(entry, ignore_errors=True)
            raise
    try:
        previous: str | None = current_version(root)
    except BundleError:
        previous = None  # a broken pointer is exactly what a promote repairs
    tmp = root / f".{CURRENT_NAME}.tmp-{uuid.uuid4().hex}"
    os.symlink(os.path.relpath(entry, root), tmp)
    try:
        os.replace(tmp, pointer)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"{pointer}: cannot switch the current pointer ({exc})") from exc
    fsync_dir(root)
    return PromoteResult(
        previous=previous,
        version=manifest.version,
        path=pointer.resolve(),
        root=root,
        entry=entry,
        placement=placement,
    )


def _place(source: Path, root: Path, *, copy: bool) -> tuple[Path, Placement]:
    """The entry under ``root`` for the bundle at ``source``, linking or copying it there if needed."""
    resolved = source.resolve()
    if resolved == root:
        raise BundleError(f"{source}: is the models root itself, not a bundle inside it")
    if source.parent.resolve() == root and source.name != CURRENT_NAME:
        return root / source.name, "inside"  # already an entry (maybe a link from an earlier promote)
    if resolved.is_relative_to(root):
        return resolved, "inside"
    entry = root / resolved.name
    if entry.is_symlink() or entry.exists():
        if _same_bundle(entry, resolved, copy=copy):
            return entry, "reused"
        raise BundleError(
            f"{entry}: already exists and is not {'a copy of' if copy else 'a link to'} {resolved}; "
            "rename the bundle directory or remove the old entry"
        )
    if not copy:
        # symlink(2) fails if the name appeared meanwhile, so a concurrent promote cannot be overwritten.
        try:
            os.symlink(resolved, entry, target_is_directory=True)
        except OSError as exc:
            raise BundleError(f"{entry}: cannot link the bundle into the models root ({exc})") from exc
        fsync_dir(root)
        return entry, "linked"
    tmp = root / f".{resolved.name}.copy-{uuid.uuid4().hex}"  # hidden: list_bundles and readers skip it
    try:
        shutil.copytree(resolved, tmp, symlinks=False)
        for child in tmp.iterdir():
            _fsync_file(child)
        fsync_dir(tmp)
        # rename(2) of a directory is atomic and refuses a non-empty target: the worker sees all or nothing.
        os.rename(tmp, entry)
    except OSError as exc:
        raise BundleError(f"{entry}: cannot copy the bundle into the models root ({exc})") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(root)
    return entry, "copied"


def _same_bundle(entry: Path, source: Path, *, copy: bool) -> bool:
    """Whether an existing root entry is this bundle: a link to it, or (for copy) a copy with its manifest."""
    if entry.resolve() == source:
        return not copy  # asked for a copy but a link is there: do not silently keep depending on the source
    if not copy or entry.is_symlink() or not entry.is_dir():
        return False
    try:
        return (entry / MANIFEST_NAME).read_bytes() == (source / MANIFEST_NAME).read_bytes()
    except OSError:
        return False


def _fsync_file(path: Path) -> None:
    if not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def current_bundle(models_root: Path) -> Path | None:
    """The bundle directory ``current`` points to (symlinks resolved), or ``None`` without a pointer.

    Unlike :func:`resolve_current`, no pointer yet is not an error (the worker polls for one).

    Raises:
        BundleError: ``current`` exists but points nowhere.
    """
    pointer = Path(models_root) / CURRENT_NAME
    if not pointer.is_symlink() and not pointer.exists():
        return None
    return resolve_current(models_root)


def current_version(models_root: Path) -> str | None:
    """The version ``current`` points to, cheaply (one readlink and one small JSON read), for polling.

    Returns:
        The version id, or ``None`` when there is no ``current`` pointer yet.

    Raises:
        BundleError: ``current`` exists but its target or manifest is broken.
    """
    path = current_bundle(models_root)
    return None if path is None else read_manifest(path).version


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
