"""Verifying and loading model bundles (layout: see bundle_write.py).

Pickles run code when loaded, so :func:`load_bundle` verifies everything first (signature, manifest,
hashes, library versions) and then unpickles the very bytes it hashed, never re-reading the file.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segstream.models.bundle_manifest import (
    ARTIFACT_SUFFIX,
    MANIFEST_NAME,
    PICKLE_SUFFIXES,
    SIGNATURE_NAME,
    SIGNATURE_SCHEME,
    BundleManifest,
    FileEntry,
    library_versions,
    major_minor,
    signature_text,
)
from segstream.models.errors import BundleError


@dataclass(frozen=True)
class LoadedBundle:
    """A verified bundle with its artifacts unpickled (all at once, at load time).

    Attributes:
        path: The bundle directory (symlinks resolved).
        manifest: Its manifest.
        artifacts: Artifact name -> unpickled object.
    """

    path: Path
    manifest: BundleManifest
    artifacts: dict[str, Any]

    @property
    def version(self) -> str:
        """The bundle version id."""
        return self.manifest.version

    def artifact(self, name: str) -> Any:
        """One artifact by name.

        Raises:
            BundleError: The bundle has no artifact of that name.
        """
        try:
            return self.artifacts[name]
        except KeyError:
            raise BundleError(
                f"{self.path}: bundle has no artifact {name!r} (has: {sorted(self.artifacts)})"
            ) from None


def read_manifest(path: Path) -> BundleManifest:
    """Read and schema-check a bundle's manifest. Nothing is unpickled and no file hashes are checked.

    Args:
        path: The bundle directory.

    Raises:
        BundleError: No readable, well-formed manifest.
    """
    manifest_path = Path(path) / MANIFEST_NAME
    return BundleManifest.from_bytes(_read(manifest_path, "manifest"), source=manifest_path)


def verify_bundle(
    path: Path,
    *,
    expected_feature_hash: str | None = None,
    signing_key: bytes | None = None,
    require_signature: bool = False,
) -> BundleManifest:
    """Check a bundle without unpickling anything.

    Checks, in order: the manifest parses and its format_version is supported; the signature (when a
    key is given the ``signature`` file must exist and match, whatever ``require_signature`` says); every
    listed file exists with the listed size and sha256; no unlisted pickle files (``*.joblib``, ``*.pkl``,
    ``*.pickle``); the feature hash (when expected); scikit-learn major.minor equals the running one.

    Args:
        path: The bundle directory.
        expected_feature_hash: The running code's feature spec hash; ``None`` skips the check.
        signing_key: HMAC key; when given, the bundle must be signed with it.
        require_signature: Refuse unless a key is given and the signature checks out.

    Returns:
        The verified manifest.

    Raises:
        BundleError: Naming the bundle path and the failed check.
    """
    manifest, _ = _verify(Path(path), expected_feature_hash, signing_key, require_signature, keep=False)
    return manifest


def load_bundle(
    path: Path,
    *,
    expected_feature_hash: str | None = None,
    signing_key: bytes | None = None,
    require_signature: bool = False,
    only: Sequence[str] | None = None,
) -> LoadedBundle:
    """Verify a bundle (see :func:`verify_bundle`), then unpickle all of its artifacts.

    The artifact bytes are read once, hashed, and unpickled from memory, so a file swapped between the
    check and the load cannot slip through. Every artifact is verified; with ``only``, just those named are
    unpickled (the worker loads the pure ``serving`` artifact and never imports trainer classes).

    Raises:
        BundleError: Verification failed (nothing was unpickled) or an artifact failed to unpickle.
    """
    import joblib

    path = Path(path).resolve()
    manifest, blobs = _verify(path, expected_feature_hash, signing_key, require_signature, keep=True)
    loaded: dict[str, Any] = {}
    wanted = manifest.artifacts if only is None else {n: manifest.artifacts[n] for n in only if n in manifest.artifacts}
    missing = sorted(set(only or ()) - set(wanted))
    if missing:
        raise BundleError(f"{path}: bundle has no artifact {', '.join(map(repr, missing))}")
    for name, entry in wanted.items():
        try:
            loaded[name] = joblib.load(io.BytesIO(blobs[name]))
        except Exception as exc:  # unpickling can raise anything; report which artifact
            raise BundleError(f"{path / entry.file}: artifact {name!r} failed to load ({exc!r})") from exc
    return LoadedBundle(path=path, manifest=manifest, artifacts=loaded)


def _verify(
    path: Path, expected_feature_hash: str | None, key: bytes | None, require_signature: bool, *, keep: bool
) -> tuple[BundleManifest, dict[str, bytes]]:
    if not path.is_dir():
        raise BundleError(f"{path}: bundle directory does not exist")
    raw = _read(path / MANIFEST_NAME, "manifest")
    manifest = BundleManifest.from_bytes(raw, source=path / MANIFEST_NAME)
    _check_signature(path, raw, key, require_signature)
    blobs: dict[str, bytes] = {}
    for name, entry in manifest.artifacts.items():
        if not entry.file.endswith(ARTIFACT_SUFFIX):
            raise BundleError(
                f"{path}: artifact {name!r} file {entry.file!r} must end with {ARTIFACT_SUFFIX}"
            )
        data = _check_file(path, entry, f"artifact {name!r}")
        if keep:
            blobs[name] = data
    for entry in manifest.files.values():
        if Path(entry.file).suffix in PICKLE_SUFFIXES:
            raise BundleError(
                f"{path}: extra file {entry.file!r} looks like a pickle; list it as an artifact"
            )
        _check_file(path, entry, "extra file")
    listed = {e.file for e in manifest.artifacts.values()}
    for child in sorted(path.iterdir()):
        if child.suffix in PICKLE_SUFFIXES and child.name not in listed:
            raise BundleError(f"{path}: unexpected pickle file {child.name!r} is not listed in the manifest")
    if expected_feature_hash is not None and manifest.feature_hash != expected_feature_hash:
        refuse_attributes(path, manifest.feature_spec)
        raise BundleError(
            f"{path}: feature spec hash {manifest.feature_hash[:12]}... (version "
            f"{manifest.feature_spec.get('version')!r}) does not match the running code's "
            f"{expected_feature_hash[:12]}...; retrain the bundle with this code"
        )
    trained = major_minor(manifest.libraries.get("scikit-learn"))
    running = major_minor(library_versions()["scikit-learn"])
    if trained != running:
        raise BundleError(
            f"{path}: bundle was pickled with scikit-learn {trained}, this process runs {running}; "
            "pickles are not safe across scikit-learn versions, retrain the bundle"
        )
    return manifest, blobs


def _check_signature(path: Path, raw: bytes, key: bytes | None, require_signature: bool) -> None:
    sig_path = path / SIGNATURE_NAME
    if key is None:
        if require_signature:
            raise BundleError(f"{path}: a signature is required but no signing key is configured")
        return
    if not sig_path.is_file():
        raise BundleError(f"{sig_path}: bundle is not signed but a signing key is configured")
    text = _read(sig_path, "signature").decode("ascii", errors="replace").strip()
    scheme, _, digest = text.partition(" ")
    if scheme != SIGNATURE_SCHEME:
        raise BundleError(f"{sig_path}: unknown signature scheme {scheme!r} (expected {SIGNATURE_SCHEME})")
    expected = signature_text(raw, key).split(" ", 1)[1].strip()
    if not hmac.compare_digest(digest.strip(), expected):
        raise BundleError(f"{sig_path}: signature does not match (wrong key, or manifest.json was edited)")


def _check_file(path: Path, entry: FileEntry, what: str) -> bytes:
    file_path = path / entry.file
    if not file_path.is_file():
        raise BundleError(f"{file_path}: {what} listed in the manifest is missing")
    data = _read(file_path, what)
    if len(data) != entry.size:
        raise BundleError(f"{file_path}: {what} has {len(data)} bytes, manifest says {entry.size}")
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise BundleError(f"{file_path}: {what} sha256 does not match the manifest (file changed)")
    return data


def _read(file_path: Path, what: str) -> bytes:
    try:
        return file_path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{file_path}: {what} file is missing") from None
    except OSError as exc:
        raise BundleError(f"{file_path}: cannot read {what} ({exc})") from exc


def needed_attributes(feature_spec: dict[str, Any]) -> list[str]:
    """The customer attributes a bundle's models need as input (empty for a behaviour-only bundle)."""
    attributes = feature_spec.get("attributes") or {}
    return [str(a.get("name")) for a in attributes.get("attributes", [])]


def refuse_attributes(path: Path, feature_spec: dict[str, Any]) -> None:
    """Refuse, with one clear message, a bundle whose models read more than the behaviour features where
    only those are at hand.

    The dashboard, campaign previews and the backtest expect the behaviour-only feature hash; a bundle
    trained with ``--attributes``, ``--preferences`` or profile-only has another one. Rather than the generic
    "retrain with this code", say what the bundle needs and where it can be used.

    Raises:
        BundleError: The spec needs attributes or product preferences.
    """
    names = needed_attributes(feature_spec)
    preferences = "preferences" in feature_spec
    if not names and not preferences:
        return
    needs = []
    if names:
        needs.append(f"the attribute(s) {', '.join(names)}")
    if preferences:
        needs.append("product preferences (spend per category)")
    what = " and ".join(needs)
    if feature_spec.get("behaviour") is False:
        raise BundleError(f"{path}: this bundle is profile-only (customer attributes, no transactions) and needs "
                          f"{what}; score it in batch with `segstream score --customers FILE`")  # fmt: skip
    raise BundleError(
        f"{path}: this bundle's models read {what}; this tool reads only bundles trained on the transactions "
        "alone. The worker serves it (attributes from the customer-profiles topic, preferences from the "
        "events' category or lines), and `segstream score` scores it in batch"
    )
