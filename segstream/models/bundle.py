"""The versioned model bundle format shared by the trainer, the stream worker and the dashboard.

This module is the public face; the code lives in ``bundle_manifest`` (the manifest and its canonical
bytes), ``bundle_write`` (atomic writing), ``bundle_verify`` (checks and loading) and ``bundle_root``
(the models root and its ``current`` pointer).

Typical use::

    from segstream.models.bundle import write_bundle_in_root, promote, load_bundle, current_version

    path = write_bundle_in_root(root, {"segmentation": pipeline, "classifier": tree},
                                feature_spec=FEATURE_SPEC.to_dict(), data_fingerprint=fp,
                                metrics=metrics, info={"segment_names": names}, signing_key=key)
    promote(path, signing_key=key)                       # <root>/current -> <version>
    promote(elsewhere, root, copy=True)                  # <root>/<name> copied in, current -> it
    bundle = load_bundle(resolve_current(root), expected_feature_hash=FEATURE_SPEC.hash,
                         signing_key=key)                 # verified, then unpickled
"""

from __future__ import annotations

from segstream.models.bundle_manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    BundleManifest,
    FileEntry,
)
from segstream.models.bundle_root import (
    CURRENT_NAME,
    BundleEntry,
    PromoteResult,
    current_bundle,
    current_version,
    list_bundles,
    promote,
    resolve_current,
)
from segstream.models.bundle_verify import LoadedBundle, load_bundle, read_manifest, verify_bundle
from segstream.models.bundle_write import write_bundle, write_bundle_in_root
from segstream.models.errors import BundleError

__all__ = [
    "CURRENT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "BundleEntry",
    "BundleError",
    "BundleManifest",
    "FileEntry",
    "LoadedBundle",
    "PromoteResult",
    "current_bundle",
    "current_version",
    "list_bundles",
    "load_bundle",
    "promote",
    "read_manifest",
    "resolve_current",
    "verify_bundle",
    "write_bundle",
    "write_bundle_in_root",
]
