"""The model bundle manifest: what a bundle contains, how it was built, and its canonical bytes.

``manifest.json`` is written in one canonical form (sorted keys, two-space indent, UTF-8, trailing
newline) and the HMAC signature covers those exact file bytes, so verifying never depends on
re-serialising parsed JSON. Reading a manifest never unpickles anything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from segstream.models.errors import BundleError

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS: frozenset[int] = frozenset({1})
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "signature"
SIGNATURE_SCHEME = "hmac-sha256"
ARTIFACT_SUFFIX = ".joblib"
# Any of these in a bundle directory would be a pickle we did not list and hash; refuse them.
PICKLE_SUFFIXES: frozenset[str] = frozenset({".joblib", ".pkl", ".pickle"})

# Names become file names: keep them to one plain path component, no hidden files, no traversal.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_LIBRARIES = ("numpy", "pandas", "scikit-learn", "joblib", "prophet", "segstream")


@dataclass(frozen=True)
class FileEntry:
    """One file of a bundle, as listed in the manifest.

    Attributes:
        file: File name inside the bundle directory.
        sha256: Hex sha256 of the file bytes.
        size: Size in bytes.
    """

    file: str
    sha256: str
    size: int


@dataclass(frozen=True)
class BundleManifest:
    """The parsed ``manifest.json`` of a bundle.

    Attributes:
        format_version: Bundle format version (see :data:`FORMAT_VERSION`).
        version: Sortable unique id, ``YYYYMMDDTHHMMSSZ-<8 hex>``.
        created_at: ISO 8601 UTC creation time.
        libraries: Versions of python and the libraries the artifacts were pickled with.
        feature_spec: The feature spec the models were trained on (must hold ``hash``).
        data_fingerprint: Fingerprint of the training data (e.g. ``rows``, ``sha256``).
        artifacts: Artifact name -> joblib file entry.
        files: Extra (non-pickle) file name -> file entry.
        metrics: Nested evaluation metrics.
        info: Free-form information (e.g. segment names).
    """

    format_version: int
    version: str
    created_at: str
    libraries: dict[str, str | None]
    feature_spec: dict[str, Any]
    data_fingerprint: dict[str, Any]
    artifacts: dict[str, FileEntry]
    files: dict[str, FileEntry] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_hash(self) -> str:
        """The feature spec hash the bundle was trained with."""
        return str(self.feature_spec["hash"])

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain JSON-ready data."""
        return {
            "format_version": self.format_version,
            "version": self.version,
            "created_at": self.created_at,
            "libraries": dict(self.libraries),
            "feature_spec": self.feature_spec,
            "data_fingerprint": self.data_fingerprint,
            "artifacts": {n: _entry_dict(e) for n, e in self.artifacts.items()},
            "files": {n: _entry_dict(e) for n, e in self.files.items()},
            "metrics": self.metrics,
            "info": self.info,
        }

    def to_bytes(self) -> bytes:
        """The canonical manifest file bytes (what the signature covers)."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes, *, source: Path | str = MANIFEST_NAME) -> BundleManifest:
        """Parse and schema-check manifest bytes.

        Args:
            raw: The ``manifest.json`` bytes.
            source: Path used in error messages.

        Returns:
            The manifest.

        Raises:
            BundleError: The bytes are not a valid manifest (message names the field).
        """
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{source}: manifest is not valid UTF-8 JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise BundleError(f"{source}: manifest must be a JSON object")
        fmt = data.get("format_version")
        if not isinstance(fmt, int) or isinstance(fmt, bool):
            raise BundleError(f"{source}: field 'format_version' must be an integer, got {fmt!r}")
        if fmt not in SUPPORTED_FORMAT_VERSIONS:
            raise BundleError(
                f"{source}: format_version {fmt} is not supported by this segstream "
                f"(supported: {sorted(SUPPORTED_FORMAT_VERSIONS)})"
            )
        for key, typ in (("version", str), ("created_at", str)):
            if not isinstance(data.get(key), typ):
                raise BundleError(f"{source}: field {key!r} must be a string")
        for key in ("libraries", "feature_spec", "data_fingerprint", "artifacts", "files", "metrics", "info"):
            if not isinstance(data.get(key), dict):
                raise BundleError(f"{source}: field {key!r} must be an object")
        if not isinstance(data["feature_spec"].get("hash"), str):
            raise BundleError(f"{source}: field 'feature_spec.hash' must be a string")
        return cls(
            format_version=fmt,
            version=data["version"],
            created_at=data["created_at"],
            libraries=data["libraries"],
            feature_spec=data["feature_spec"],
            data_fingerprint=data["data_fingerprint"],
            artifacts={n: _parse_entry(e, f"artifacts.{n}", source) for n, e in data["artifacts"].items()},
            files={n: _parse_entry(e, f"files.{n}", source) for n, e in data["files"].items()},
            metrics=data["metrics"],
            info=data["info"],
        )


def _entry_dict(entry: FileEntry) -> dict[str, Any]:
    return {"file": entry.file, "sha256": entry.sha256, "size": entry.size}


def _parse_entry(raw: object, where: str, source: Path | str) -> FileEntry:
    if not isinstance(raw, dict):
        raise BundleError(f"{source}: field {where!r} must be an object")
    name, digest, size = raw.get("file"), raw.get("sha256"), raw.get("size")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise BundleError(f"{source}: field '{where}.file' must be a plain file name, got {name!r}")
    if not isinstance(digest, str) or not _SHA256_RE.match(digest):
        raise BundleError(f"{source}: field '{where}.sha256' must be 64 lowercase hex characters")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BundleError(f"{source}: field '{where}.size' must be a non-negative integer")
    return FileEntry(file=name, sha256=digest, size=size)


def check_name(name: str, what: str) -> None:
    """Refuse a name that is not safe as a single file name.

    Raises:
        BundleError: The name has path separators, starts with a dot, or uses other characters.
    """
    if not _NAME_RE.match(name):
        raise BundleError(
            f"{what} name {name!r} is not allowed: use letters, digits, '_', '-', '.' "
            "(not starting with '.' or '-', at most 128 characters)"
        )


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """Deterministic JSON bytes: sorted keys, two-space indent, UTF-8, trailing newline."""
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def to_jsonable(value: object, where: str) -> Any:
    """Normalise caller data (metrics, info, ...) to plain JSON types.

    numpy scalars and arrays become Python numbers and lists, tuples become lists, paths become strings,
    and non-finite floats (NaN, inf) become ``None`` because strict JSON has no spelling for them.

    Raises:
        BundleError: A value cannot be represented (names the field path).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise BundleError(f"{where}: key {key!r} must be a string")
            out[str(key)] = to_jsonable(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [to_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    # numpy (and pandas) scalars and arrays, without importing numpy here.
    for attr in ("tolist", "item"):
        method = getattr(value, attr, None)
        if callable(method):
            return to_jsonable(method(), where)
    raise BundleError(f"{where}: value of type {type(value).__name__} cannot be stored in the manifest")


def library_versions() -> dict[str, str | None]:
    """Versions of python and the libraries that matter for unpickling (``None`` if not installed)."""
    versions: dict[str, str | None] = {"python": ".".join(str(p) for p in sys.version_info[:3])}
    for dist in _LIBRARIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def major_minor(version: str | None) -> str | None:
    """``"1.9.1" -> "1.9"``; ``None`` stays ``None``."""
    if version is None:
        return None
    return ".".join(version.split(".")[:2])


def new_version_id(created: datetime, content: Mapping[str, Any]) -> str:
    """A sortable unique version id: UTC second timestamp plus 8 hex of a content hash.

    The content includes ``created_at`` with microseconds, so two bundles of identical models written at
    different moments still get different ids.
    """
    digest = hashlib.sha256(canonical_json(content)).hexdigest()[:8]
    return f"{created.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{digest}"


def signature_text(manifest_bytes: bytes, key: bytes) -> str:
    """The ``signature`` file text: ``"hmac-sha256 <hex>"`` over the exact manifest file bytes."""
    return f"{SIGNATURE_SCHEME} {hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()}\n"
