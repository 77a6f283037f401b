"""The active model bundle and its hot reload.

:class:`ModelHolder` keeps one :class:`ActiveModel`. :meth:`ModelHolder.poll` reads the models root's
``current`` pointer (one readlink and a small JSON read); when it names another version the bundle is
verified (hashes, signature, feature spec) and loaded, and only then swapped in with a single attribute
assignment. The pipeline reads ``holder.active`` once per batch, so a batch is scored by one model from
start to end and no event waits for or misses a swap. A bundle that fails verification or loading is
refused, logged, remembered (so it is not retried on every poll) and the old model keeps serving.

A refusal is remembered by what was checked, not by the version id: the resolved bundle directory plus a
:func:`bundle_fingerprint` of its files. A corrupted copy of version V is refused, yet the intact V
promoted afterwards (another directory) or the same directory repaired in place (other file stats) is
tried again; an unchanged refused bundle is neither reloaded nor logged again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segstream.models.bundle import CURRENT_NAME, MANIFEST_NAME, current_bundle, load_bundle, read_manifest
from segstream.models.errors import BundleError
from segstream.models.features import FeatureSpec
from segstream.models.serving import SERVING, ServingModels
from segstream.streams.errors import NoModelError

log = logging.getLogger("segstream.worker")


@dataclass(frozen=True)
class ActiveModel:
    """A verified, loaded bundle the worker scores with.

    Attributes:
        version: The bundle version id (carried by every output as ``model_version``).
        path: The bundle directory.
        serving: The pure scorers, names and training reference numbers.
        loaded_at: Wall-clock time it was loaded (epoch seconds).
    """

    version: str
    path: Path
    serving: ServingModels
    loaded_at: float = field(default_factory=time.time)

    @property
    def names(self) -> dict[int, str]:
        """Segment id -> name."""
        return self.serving.names

    @property
    def descriptions(self) -> dict[int, str]:
        """Segment id -> one-line description (empty for a bundle trained before descriptions existed)."""
        return self.serving.segment_descriptions

    def segment_name(self, segment: int | None) -> str | None:
        """Name of a segment id (None for None)."""
        return self.serving.segment_name(segment)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Segment ids of full feature rows (vectorised)."""
        return self.serving.predict_segments(x)

    @property
    def needs_attributes(self) -> bool:
        """Whether the model reads customer attributes (the stream then reads each customer's profile)."""
        return bool(getattr(self.serving, "needs_attributes", False))

    @property
    def needs_categories(self) -> bool:
        """Whether the model reads product preferences (the fold then returns each customer's categories)."""
        return bool(getattr(self.serving, "needs_categories", False))


def load_active(path: Path, *, signing_key: bytes | None = None, require_signature: bool = False) -> ActiveModel:
    """Verify and load the serving part of a bundle.

    Raises:
        BundleError: The bundle is broken, unsigned when it must be signed, or built for other features.
    """
    spec = read_manifest(Path(path)).feature_spec
    if spec.get("behaviour") is False:
        raise BundleError(f"{path}: a profile-only bundle (customer attributes, no transactions) scores no "
                          "purchases; score it in batch with `segstream score --customers FILE`")  # fmt: skip
    # The code's own spec for what the bundle says it reads (attributes, preferences): the hashes match only
    # if this code computes and encodes them exactly as the trainer did.
    loaded = load_bundle(
        Path(path),
        expected_feature_hash=FeatureSpec.for_manifest(spec).hash,
        signing_key=signing_key,
        require_signature=require_signature,
        only=[SERVING],
    )
    serving = loaded.artifact(SERVING)
    if not isinstance(serving, ServingModels):
        raise BundleError(f"{loaded.path}: artifact {SERVING!r} is a {type(serving).__name__}, not ServingModels")
    return ActiveModel(loaded.version, loaded.path, serving)


@dataclass(frozen=True)
class BundleFingerprint:
    """What a refusal is remembered by: where the bundle is and the state of its files.

    Attributes:
        path: The bundle directory, symlinks resolved.
        manifest_sha256: Hex sha256 of ``manifest.json`` (``""`` when unreadable).
        files: ``(name, size, mtime_ns, inode)`` of every entry in the directory, sorted; unlisted pickles
            and a missing signature change verification too, so all entries count, not just the artifacts.
    """

    path: Path
    manifest_sha256: str
    files: tuple[tuple[str, int, int, int], ...]


def bundle_fingerprint(path: Path) -> BundleFingerprint:
    """Fingerprint a bundle directory cheaply: one small read and one stat per file, no artifact hashing.

    Cheap enough for every poll (a few seconds apart). A rewrite that keeps a file's size, inode and
    mtime (same filesystem timestamp tick) is not noticed; replacing a file or touching it is.
    """
    path = Path(path).resolve()
    try:
        manifest_sha = hashlib.sha256((path / MANIFEST_NAME).read_bytes()).hexdigest()
    except OSError:
        manifest_sha = ""
    files: list[tuple[str, int, int, int]] = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    st = entry.stat()  # follows symlinks: what a load would read
                except OSError:
                    st = None
                files.append((entry.name, st.st_size, st.st_mtime_ns, st.st_ino) if st else (entry.name, -1, -1, -1))
    except OSError:
        pass  # an unreadable directory is fingerprinted by path alone; loading it fails the same way
    return BundleFingerprint(path, manifest_sha, tuple(sorted(files)))


def no_model_hint(models_root: Path) -> str:
    """How to get a model to a worker that has none: where it looks and the two commands that put one there."""
    root = Path(models_root).absolute()
    return (
        f"train one with `segstream train --out {root}/NAME --promote` or run `segstream promote DIR` "
        f"(SEGSTREAM_MODEL_ROOT={root})"
    )


class ModelHolder:
    """Holds the active model and swaps in a new one when the ``current`` pointer moves.

    Attributes:
        refused: Refusal reasons, keyed by the :class:`BundleFingerprint` of the refused bundle (or by
            ``"pointer:<error>"`` when ``current`` itself is broken).
    """

    def __init__(
        self,
        models_root: Path,
        *,
        signing_key: bytes | None = None,
        require_signature: bool = False,
        active: ActiveModel | None = None,
    ) -> None:
        self.models_root = Path(models_root)
        self._signing_key = signing_key
        self._require_signature = require_signature
        self.active: ActiveModel | None = active
        self.refused: dict[Hashable, str] = {}
        self.swaps = 0

    def require(self) -> ActiveModel:
        """The active model.

        Raises:
            NoModelError: None has been loaded yet.
        """
        model = self.active
        if model is None:
            raise NoModelError(f"{self.models_root}: no model bundle loaded; {no_model_hint(self.models_root)}")
        return model

    def poll(self) -> str:
        """Check the ``current`` pointer once and swap if it moved (blocking file I/O; see :meth:`poll_async`).

        Returns:
            ``"unchanged"``, ``"swapped"``, ``"refused"`` (a new bundle failed; the old one is kept), or
            ``"none"`` (no ``current`` pointer yet).
        """
        try:
            # Resolve once and use that directory throughout, so a pointer moving mid-poll cannot make the
            # version, the fingerprint and the loaded bundle come from different directories.
            path = current_bundle(self.models_root)
            if path is None:
                return "none"
            version = read_manifest(path).version
        except BundleError as exc:
            return self._refuse(f"pointer:{exc}", str(exc))
        if self.active is not None and version == self.active.version:
            return "unchanged"
        # Taken before loading: if files change during the load, the next poll sees another fingerprint.
        fingerprint = bundle_fingerprint(path)
        if fingerprint in self.refused:
            return "refused"
        try:
            model = load_active(path, signing_key=self._signing_key, require_signature=self._require_signature)
        except BundleError as exc:
            return self._refuse(fingerprint, str(exc))
        previous = self.active.version if self.active is not None else None
        self.active = model  # one assignment: a batch sees the old model or the new one, never a mix
        self.swaps += previous is not None
        log.info("model bundle %s loaded (previous: %s)", model.version, previous)
        return "swapped"

    def _refuse(self, key: Hashable, reason: str) -> str:
        if key not in self.refused:
            kept = self.active.version if self.active is not None else "none"
            log.error("refused model bundle: %s; keeping the active model (%s)", reason, kept)
        self.refused[key] = reason
        return "refused"

    async def poll_async(self) -> str:
        """:meth:`poll` in a worker thread, so loading a bundle does not stall the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.poll)

    async def wait_ready(self, interval_s: float = 2.0) -> ActiveModel:
        """Poll until a model is active (logging once while there is none) and return it."""
        warned = False
        while self.active is None:
            outcome = await self.poll_async()
            if self.active is None:
                if not warned:
                    pointer = Path(self.models_root).absolute() / CURRENT_NAME
                    # Say where the worker looks and how to put a model there: a bundle promoted into
                    # another root otherwise leaves the worker waiting with no clue why.
                    if outcome == "refused":
                        state = f"the bundle at {pointer} was refused (see the error above)"
                    else:
                        state = f"no model bundle at {pointer}"
                    log.warning("waiting for a model: %s; %s", state, no_model_hint(self.models_root))
                    warned = True
                await asyncio.sleep(interval_s)
        return self.active

    async def watch(self, interval_s: float = 2.0) -> None:
        """Poll forever (run as a background task)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll_async()
            except Exception:  # a watcher must survive anything the filesystem throws at it
                log.exception("model bundle poll failed; keeping the active model")
