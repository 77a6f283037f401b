"""Customer attributes (demographics, credit, payment behaviour) as model inputs: the pure encode step.

A customer table has one row per customer and attribute columns. The trainer chooses some of them and
fits an :class:`AttributeSpec` (``segstream.trainer.attributes``); this module turns a spec plus raw
attribute values into a fixed-width float vector, identically for the trainer, ``segstream score`` and
(later) the stream, which will receive the same raw values on a customer-profiles topic.

Encoding rules (all stored in the spec, so they are part of the feature spec hash):

* numeric attribute -> one column with the value; a missing, empty, unparsable or non-finite value
  becomes the training median (deterministic, and stored).
* categorical attribute -> one 0/1 column per kept level (at most ``max_levels``, the most frequent in
  training; ties by level text) plus one ``<name>=other`` column; a level not kept, a level never seen
  in training, and a missing value all count as ``other``. So the width is fixed whatever comes in.

Encoded columns are named ``<name>`` (numeric) and ``<name>=<level>`` (categorical).

This module also holds the numpy scorers for feature matrices wider than (or other than) the behaviour
features: :class:`WideSegmentScorer` and :class:`WideTreeScorer` take rows in :attr:`input_names` order
(behaviour features first, then the encoded attributes; or attributes only for a profile-only model) and
repeat exactly the arithmetic of :class:`~segstream.models.scoring.SegmentScorer` /
:class:`~segstream.models.scoring.TreeScorer`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segstream.models.errors import FeatureSpecError
from segstream.models.scoring import SegmentScorer, TreeScorer

NUMERIC = "numeric"
CATEGORICAL = "categorical"
OTHER = "other"
DEFAULT_MAX_LEVELS = 10
ATTRIBUTE_SPEC_VERSION = 1


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def parse_number(value: Any) -> float | None:
    """A finite float from a raw value (number or numeric text), else None (missing or unparsable)."""
    if _is_missing(value) or isinstance(value, bool):
        return None
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def level_text(value: Any) -> str | None:
    """The level a raw categorical value stands for (stripped text), or None when missing."""
    if _is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1.0 read from a numeric column is the level "1"
    return str(value).strip()


@dataclass(frozen=True)
class Attribute:
    """One chosen attribute.

    Attributes:
        name: The customer table's column.
        kind: :data:`NUMERIC` or :data:`CATEGORICAL`.
        fill: Numeric only: the value a missing one becomes (the training median).
        levels: Categorical only: the kept levels, most frequent first; everything else is ``other``.
    """

    name: str
    kind: str
    fill: float = 0.0
    levels: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """Encoded column names of this attribute."""
        if self.kind == NUMERIC:
            return (self.name,)
        return (*(f"{self.name}={lv}" for lv in self.levels), f"{self.name}={OTHER}")

    def encode(self, value: Any) -> list[float]:
        """The encoded values of one raw value."""
        if self.kind == NUMERIC:
            number = parse_number(value)
            return [self.fill if number is None else number]
        level = level_text(value)
        out = [0.0] * (len(self.levels) + 1)
        out[self.levels.index(level) if level in self.levels else len(self.levels)] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        if self.kind == NUMERIC:
            return {"name": self.name, "kind": self.kind, "fill": float(self.fill)}
        return {"name": self.name, "kind": self.kind, "levels": list(self.levels)}


@dataclass(frozen=True)
class AttributeSpec:
    """The chosen attributes and how each is encoded; part of the bundle's feature spec and its hash.

    Attributes:
        attributes: In the order chosen (``--attributes a,b,c``).
        max_levels: The cap on kept levels of a categorical attribute.
    """

    attributes: tuple[Attribute, ...]
    max_levels: int = DEFAULT_MAX_LEVELS

    @property
    def names(self) -> tuple[str, ...]:
        """The attribute (table column) names."""
        return tuple(a.name for a in self.attributes)

    @property
    def columns(self) -> tuple[str, ...]:
        """Encoded column names, in vector order."""
        return tuple(c for a in self.attributes for c in a.columns)

    @property
    def width(self) -> int:
        """Length of an encoded vector."""
        return len(self.columns)

    def groups(self) -> list[tuple[Attribute, list[int]]]:
        """Each attribute with the positions of its encoded columns."""
        out, start = [], 0
        for attr in self.attributes:
            n = len(attr.columns)
            out.append((attr, list(range(start, start + n))))
            start += n
        return out

    def encode_row(self, row: Mapping[str, Any] | None) -> np.ndarray:
        """One customer's raw attributes (a dict; absent keys count as missing) -> float64 vector."""
        row = row or {}
        values: list[float] = []
        for attr in self.attributes:
            values.extend(attr.encode(row.get(attr.name)))
        return np.array(values, dtype=np.float64)

    def encode_rows(self, rows: Iterable[Mapping[str, Any] | None]) -> np.ndarray:
        """Many customers' raw attributes -> (n, width) float64 matrix."""
        encoded = [self.encode_row(r) for r in rows]
        return np.vstack(encoded) if encoded else np.empty((0, self.width), dtype=np.float64)

    def encode_columns(self, columns: Mapping[str, Sequence[Any]], n: int) -> np.ndarray:
        """Column-wise raw values (name -> n values; a missing name is all missing) -> (n, width) matrix.

        Same result as :meth:`encode_rows` on the same values, vectorised per column.
        """
        blocks: list[np.ndarray] = []
        for attr in self.attributes:
            raw = columns.get(attr.name, [None] * n)
            if attr.kind == NUMERIC:
                nums = [parse_number(v) for v in raw]
                blocks.append(np.array([attr.fill if v is None else v for v in nums], dtype=np.float64).reshape(n, 1))
            else:
                pos = {lv: i for i, lv in enumerate(attr.levels)}
                texts = [level_text(v) for v in raw]
                idx = np.array([len(attr.levels) if t is None else pos.get(t, len(attr.levels)) for t in texts],
                               dtype=np.intp)  # fmt: skip
                block = np.zeros((n, len(attr.levels) + 1), dtype=np.float64)
                block[np.arange(n), idx] = 1.0
                blocks.append(block)
        return np.hstack(blocks) if blocks else np.empty((n, 0), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready spec (as stored in the manifest's feature spec)."""
        return {
            "version": ATTRIBUTE_SPEC_VERSION,
            "max_levels": int(self.max_levels),
            "other": OTHER,
            "attributes": [a.to_dict() for a in self.attributes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttributeSpec:
        """Rebuild a spec from :meth:`to_dict` output (e.g. a bundle manifest's)."""
        if int(data.get("version", -1)) != ATTRIBUTE_SPEC_VERSION:
            raise FeatureSpecError(f"attribute spec version {data.get('version')!r} is not "
                                   f"{ATTRIBUTE_SPEC_VERSION}; retrain the bundle with this code")  # fmt: skip
        attrs = []
        for item in data.get("attributes", []):
            if item["kind"] == NUMERIC:
                attrs.append(Attribute(str(item["name"]), NUMERIC, fill=float(item["fill"])))
            elif item["kind"] == CATEGORICAL:
                attrs.append(Attribute(str(item["name"]), CATEGORICAL, levels=tuple(map(str, item["levels"]))))
            else:
                raise FeatureSpecError(f"attribute {item.get('name')!r} has unknown kind {item['kind']!r}")
        return cls(tuple(attrs), int(data.get("max_levels", DEFAULT_MAX_LEVELS)))

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_dict`."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


def _wide(x: np.ndarray, width: int) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise FeatureSpecError(f"feature matrix must have shape (n, {width}) in input_names order, got {arr.shape}")
    return arr


def _indices(names: Sequence[str], input_names: Sequence[str]) -> np.ndarray:
    unknown = [n for n in names if n not in input_names]
    if unknown:
        raise FeatureSpecError(f"unknown feature name(s) {unknown}; known: {list(input_names)}")
    return np.array([list(input_names).index(n) for n in names], dtype=np.intp)


class WideSegmentScorer(SegmentScorer):
    """:class:`SegmentScorer` on rows of ``input_names`` columns (behaviour and/or encoded attributes)."""

    def __init__(
        self,
        scaler: Any,
        pca: Any,
        kmeans: Any,
        feature_names: Sequence[str],
        label_to_id: Sequence[int] | np.ndarray,
        names: Mapping[int, str],
        input_names: Sequence[str],
    ) -> None:
        """As SegmentScorer; ``feature_names`` are picked from rows laid out as ``input_names``."""
        self.input_names = tuple(input_names)
        self.feature_names = tuple(feature_names)
        self.columns = _indices(self.feature_names, self.input_names)
        self.scaler_mean = np.array(scaler.mean_, dtype=np.float64)
        self.scaler_scale = np.array(scaler.scale_, dtype=np.float64)
        self.components = np.ascontiguousarray(pca.components_, dtype=np.float64)
        self.mean_projection = np.reshape(pca.mean_, (1, -1)) @ self.components.T
        self.whiten_scale = None
        if pca.whiten:
            scale = np.sqrt(pca.explained_variance_)
            scale[scale < np.finfo(scale.dtype).eps] = np.finfo(scale.dtype).eps
            self.whiten_scale = scale
        self.centers = np.ascontiguousarray(kmeans.cluster_centers_, dtype=np.float64)
        self.center_sq_norms = np.einsum("ij,ij->i", self.centers, self.centers)
        self.label_to_id = np.asarray(label_to_id, dtype=np.int64)
        self.names = {int(k): str(v) for k, v in names.items()}

    def transform(self, x: np.ndarray) -> np.ndarray:
        """PCA coordinates of rows in ``input_names`` order (same arithmetic as SegmentScorer)."""
        from segstream.models.scoring import signed_log1p

        sub = np.ascontiguousarray(_wide(x, len(self.input_names))[:, self.columns])
        if not np.isfinite(sub).all():
            bad = int(np.argwhere(~np.isfinite(sub))[0][1])
            raise FeatureSpecError(f"feature {self.feature_names[bad]!r} has a non-finite value")
        scaled = (signed_log1p(sub) - self.scaler_mean) / self.scaler_scale
        projected = scaled @ self.components.T
        projected -= self.mean_projection
        if self.whiten_scale is not None:
            projected /= self.whiten_scale
        return projected


class WideTreeScorer(TreeScorer):
    """:class:`TreeScorer` on rows of ``input_names`` columns."""

    def __init__(self, tree: Any, feature_names: Sequence[str], input_names: Sequence[str]) -> None:
        """Copy the node arrays of a tree trained on ``feature_names`` columns of ``input_names`` rows."""
        self.input_names = tuple(input_names)
        super().__init__(tree, feature_names, columns=_indices(tuple(feature_names), self.input_names))

    def _rows(self, x: np.ndarray) -> np.ndarray:
        return _wide(x, len(self.input_names))
