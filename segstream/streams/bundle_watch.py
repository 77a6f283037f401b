"""The active model bundle and its hot reload.

:class:`ModelHolder` keeps one :class:`ActiveModel`. :meth:`ModelHolder.poll` reads the models root's
``current`` pointer (one readlink and a small JSON read); when it names another version the bundle is
verified (hashes, signature, feature spec) and loaded, and only then swapped in with a single attribute
assignment. The pipeline reads ``holder.active`` once per batch, so a batch is scored by one model from
start to end and no event waits for or misses a swap. A bundle that fails verification or loading is
refused, logged, remembered (so it is not retried on every poll) and the old model keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segstream.models.bundle import current_version, load_bundle, resolve_current
from segstream.models.errors import BundleError
from segstream.models.features import FEATURE_SPEC
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

    def segment_name(self, segment: int | None) -> str | None:
        """Name of a segment id (None for None)."""
        return self.serving.segment_name(segment)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Segment ids of full feature rows (vectorised)."""
        return self.serving.predict_segments(x)


def load_active(path: Path, *, signing_key: bytes | None = None, require_signature: bool = False) -> ActiveModel:
    """Verify and load the serving part of a bundle.

    Raises:
        BundleError: The bundle is broken, unsigned when it must be signed, or built for other features.
    """
    loaded = load_bundle(
        Path(path),
        expected_feature_hash=FEATURE_SPEC.hash,
        signing_key=signing_key,
        require_signature=require_signature,
        only=[SERVING],
    )
    serving = loaded.artifact(SERVING)
    if not isinstance(serving, ServingModels):
        raise BundleError(f"{loaded.path}: artifact {SERVING!r} is a {type(serving).__name__}, not ServingModels")
    return ActiveModel(loaded.version, loaded.path, serving)


class ModelHolder:
    """Holds the active model and swaps in a new one when the ``current`` pointer moves."""

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
        self.refused: dict[str, str] = {}
        self.swaps = 0

    def require(self) -> ActiveModel:
        """The active model.

        Raises:
            NoModelError: None has been loaded yet.
        """
        model = self.active
        if model is None:
            raise NoModelError(f"{self.models_root}: no model bundle loaded (train one and promote it)")
        return model

    def poll(self) -> str:
        """Check the ``current`` pointer once and swap if it moved (blocking file I/O; see :meth:`poll_async`).

        Returns:
            ``"unchanged"``, ``"swapped"``, ``"refused"`` (a new bundle failed; the old one is kept), or
            ``"none"`` (no ``current`` pointer yet).
        """
        try:
            version = current_version(self.models_root)
        except BundleError as exc:
            return self._refuse(f"pointer:{exc}", str(exc))
        if version is None:
            return "none"
        if self.active is not None and version == self.active.version:
            return "unchanged"
        if version in self.refused:
            return "refused"
        try:
            model = load_active(
                resolve_current(self.models_root),
                signing_key=self._signing_key,
                require_signature=self._require_signature,
            )
        except BundleError as exc:
            return self._refuse(version, str(exc))
        previous = self.active.version if self.active is not None else None
        self.active = model  # one assignment: a batch sees the old model or the new one, never a mix
        self.swaps += previous is not None
        log.info("model bundle %s loaded (previous: %s)", model.version, previous)
        return "swapped"

    def _refuse(self, key: str, reason: str) -> str:
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
                    log.warning("waiting for a model bundle under %s (%s)", self.models_root, outcome)
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
