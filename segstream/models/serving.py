"""What the online side needs from a bundle, in pure ``models`` classes.

The trainer's own result objects (``SegmentationModel`` and friends) live in ``segstream.trainer``;
unpickling them would make the worker import the trainer. The trainer therefore also stores one
:class:`ServingModels` artifact, built only from ``segstream.models`` scorers, and the worker and dashboard
load just that one (``load_bundle(..., only=[SERVING])``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segstream.models.attributes import AttributeSpec
from segstream.models.features import FEATURE_NAMES
from segstream.models.preferences import PreferenceSpec
from segstream.models.rfm import RFMScorer
from segstream.models.scoring import SegmentScorer, TreeScorer

SERVING = "serving"


@dataclass
class ServingModels:
    """The scorers and reference numbers the worker and the dashboard use.

    Attributes:
        segments: The segmenter: full feature rows -> stable segment ids (K-Means or the RFM map).
        tree: The entropy decision tree that explains segments (what-if decision paths).
        purchase: Predicted next-90-day spend from full feature rows (has ``predict``).
        names: Segment id -> human name.
        training_mix: Segment id -> share of training customers (the drift reference).
        as_of_ms: The training data's as-of time.
        descriptions: Segment id -> one line a marketer reads ("bought once, last purchase 16 months ago").
        segmenter: ``kmeans`` or ``rfm``: which segmenter ``segments`` is.
        attributes: The customer attributes the models take (None: behaviour features only). Rows then
            hold the behaviour features (unless ``behaviour`` is False) followed by
            ``attributes.columns``; see :attr:`input_names`.
        behaviour: False for a profile-only bundle (no transaction features; ``purchase`` is None).
    """

    segments: SegmentScorer | RFMScorer
    tree: TreeScorer
    purchase: Any
    names: dict[int, str]
    training_mix: dict[int, float] = field(default_factory=dict)
    as_of_ms: int = 0
    descriptions: dict[int, str] = field(default_factory=dict)
    segmenter: str = "kmeans"
    attributes: AttributeSpec | None = None
    behaviour: bool = True
    preferences: PreferenceSpec | None = None

    @property
    def preference_spec(self) -> PreferenceSpec | None:
        """The product-preference features the models take (None for bundles without them)."""
        return getattr(self, "preferences", None)

    @property
    def needs_categories(self) -> bool:
        """Whether scoring needs each customer's net cents per category."""
        return self.preference_spec is not None

    @property
    def attribute_spec(self) -> AttributeSpec | None:
        """The attributes; bundles pickled before they existed unpickle without the attribute."""
        return getattr(self, "attributes", None)

    @property
    def uses_behaviour(self) -> bool:
        """Whether rows start with the behaviour features (False only for a profile-only bundle)."""
        return bool(getattr(self, "behaviour", True))

    @property
    def needs_attributes(self) -> bool:
        """Whether scoring needs customer attributes (the stream reads them from the stored profiles)."""
        return self.attribute_spec is not None

    @property
    def input_names(self) -> tuple[str, ...]:
        """Columns of a model input row: behaviour features, product preferences, attributes."""
        spec, prefs = self.attribute_spec, self.preference_spec
        return (*(FEATURE_NAMES if self.uses_behaviour else ()), *(prefs.names if prefs is not None else ()),
                *(spec.columns if spec is not None else ()))  # fmt: skip

    def input_rows(
        self,
        behaviour: np.ndarray,
        *,
        categories: Sequence[Mapping[str, int]] = (),
        profiles: Sequence[Mapping[str, Any] | None] = (),
    ) -> np.ndarray:
        """Model input rows from the behaviour feature rows and, per row, the customer's net cents per
        category and raw attributes (what the batch path and the stream both hand in; a missing profile
        gets the spec's defaults)."""
        x = np.atleast_2d(np.asarray(behaviour, dtype=np.float64))
        blocks = [x] if self.uses_behaviour else []
        prefs, spec = self.preference_spec, self.attribute_spec
        if prefs is not None:
            blocks.append(prefs.matrix(list(categories) if categories else [{}] * len(x)))
        if spec is not None:
            blocks.append(spec.encode_rows(list(profiles) if profiles else [None] * len(x)))
        return np.column_stack(blocks) if len(blocks) > 1 else blocks[0]

    @property
    def segment_descriptions(self) -> dict[int, str]:
        """The descriptions; bundles pickled before they existed unpickle without the attribute."""
        return getattr(self, "descriptions", None) or {}

    def segment_name(self, segment: int | None) -> str | None:
        """The name of a segment id (None for None)."""
        return None if segment is None else self.names.get(int(segment), f"segment {segment}")

    def predict_segments(self, x: np.ndarray) -> np.ndarray:
        """Segment ids of full feature rows."""
        return self.segments.predict_segment(x)

    def predict_spend(self, x: np.ndarray) -> np.ndarray:
        """Predicted next-90-day net spend of full feature rows (NaN for a profile-only bundle).

        The purchase models take the behaviour features only: the first ``len(FEATURE_NAMES)`` columns.
        """
        arr = np.asarray(x, dtype=np.float64)
        if self.purchase is None:
            return np.full(arr.reshape(-1, arr.shape[-1]).shape[0], np.nan)
        if arr.shape[-1] != len(FEATURE_NAMES):
            arr = arr.reshape(-1, arr.shape[-1])[:, : len(FEATURE_NAMES)]
        return np.asarray(self.purchase.predict(arr), dtype=np.float64)


def training_mix(sizes: Mapping[int, int]) -> dict[int, float]:
    """Segment shares from segment sizes."""
    total = sum(sizes.values()) or 1
    return {int(k): v / total for k, v in sizes.items()}
