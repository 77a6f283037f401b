"""The training run: clean events in, a verified model bundle out, with a timing for every stage.

Stages: features -> segmentation -> classifier -> purchase models -> sales forecasts -> bundle. Each stage
is timed and reported through a callback so the CLI can show progress and print the breakdown.

Customer attributes (``customers=`` a :class:`~segstream.trainer.attributes.CustomerTable` and
``TrainOptions.attributes``): the chosen attributes are encoded (:mod:`segstream.models.attributes`) and
joined after the behaviour features for the segmentation and the tree; the purchase models and forecasts
stay on behaviour. A customer with events but no table row gets every attribute imputed (median /
``other``) and is counted in ``info.attributes.coverage``. Without events (``events=None``) the run is
profile-only: segmentation, tree, names and report from the attributes alone; the purchase and forecast
stages are skipped and the manifest says why. Without attributes nothing changes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from segstream.models.attributes import AttributeSpec
from segstream.models.bundle import load_bundle, write_bundle
from segstream.models.features import FEATURE_NAMES, FEATURE_SPEC, FeatureSpec
from segstream.models.preferences import PreferenceSpec
from segstream.models.serving import SERVING, ServingModels, training_mix
from segstream.trainer.attributes import (
    CustomerTable,
    categorical_blocks,
    encode_customers,
    fit_attribute_spec,
    table_fingerprint,
)
from segstream.trainer.classifier import fit_classifier
from segstream.trainer.errors import TrainerError
from segstream.trainer.forecast_eval import backtest
from segstream.trainer.history import EventHistory, History, as_history, features_at
from segstream.trainer.k_choice import DEFAULT_K_RANGE
from segstream.trainer.name_check import check_names
from segstream.trainer.naming import (
    attribute_profiles,
    describe_attributes,
    describe_segments,
    name_attribute_segments,
    name_segments,
)
from segstream.trainer.preferences import (
    describe_preferences,
    dominant_category,
    fit_preferences,
    preference_profiles,
    with_category,
)
from segstream.trainer.purchase import fit_purchase_models
from segstream.trainer.rfm_segmentation import RFM, crosstab, fit_rfm_segmentation, rfm_cells
from segstream.trainer.scoring import PURCHASE, SEGMENTATION
from segstream.trainer.segmentation import CLUSTER_FEATURES, SegmentationModel, fit_segmentation
from segstream.viz.bundle_tables import (
    BACKTEST_FILE,
    CUSTOMERS_FILE,
    DAILY_SALES_FILE,
    FORECASTS_FILE,
    RULES_FILE,
)

# Artifact names inside a bundle; the worker and dashboard read them by these names.
CLASSIFIER = "classifier"

Progress = Callable[[str, str], None]


@dataclass
class TrainOptions:
    """Knobs of a training run (defaults are what ``segstream train`` uses)."""

    k: int | None = None
    k_range: range = DEFAULT_K_RANGE
    segmenter: str = "kmeans"  # or "rfm"
    forecast_horizon_days: int = 28
    purchase_horizon_days: int = 90
    seed: int = 0
    previous_bundle: Path | None = None
    signing_key: bytes | None = None
    attributes: tuple[str, ...] = ()  # customer table columns joined to the features (needs customers=)
    max_levels: int = 10  # kept levels of a categorical attribute; the rest is "other"
    preferences: int = 0  # > 0: join product preferences over the training data's top N categories


@dataclass
class TrainResult:
    """What a run produced."""

    bundle_dir: Path
    version: str
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def train_bundle(
    events: pd.DataFrame | History | None,
    out_dir: Path,
    *,
    options: TrainOptions | None = None,
    cleaning: dict[str, Any] | None = None,
    source: str = "",
    progress: Progress | None = None,
    customers: CustomerTable | None = None,
) -> TrainResult:
    """Train every model on clean events and write the bundle to ``out_dir``.

    Args:
        events: Clean events (``segstream.trainer.cleaning.clean_transactions`` output), or their
            :class:`~segstream.trainer.history.History` (e.g. rows left in DuckDB by ``--pushdown``); None
            for a profile-only run on ``customers`` alone.
        out_dir: Bundle directory to create (must not exist or be empty).
        options: Training knobs.
        cleaning: The cleaning report as a dict, stored in the manifest.
        source: Where the events came from (for the manifest).
        progress: Called with (stage, message) as stages start and finish.
        customers: The customer table whose ``options.attributes`` join the features.

    Returns:
        The bundle location, version, metrics and per-stage timings in seconds.

    Raises:
        TrainerError: Attributes without a customer table or the reverse, no events and no attributes,
            or attributes with the RFM segmenter.
        DataFileError: A chosen attribute is not in the table (and the other table checks).
    """
    opts = options or TrainOptions()
    if opts.attributes and customers is None:
        raise TrainerError("--attributes needs a customer table (--customers FILE)")
    if customers is not None and not opts.attributes:
        raise TrainerError(f"{customers.where}: choose the attributes to use with --attributes a,b,c "
                           f"(columns: {', '.join(customers.columns)})")  # fmt: skip
    if events is None and not opts.attributes:
        raise TrainerError("nothing to train on: give transactions (--data), or a customer table with "
                           "--customers FILE --attributes a,b,c for a profile-only model")  # fmt: skip
    if (opts.attributes or opts.preferences) and opts.segmenter == RFM:
        raise TrainerError("the RFM map segments on recency, frequency and monetary quintiles only; customer "
                           "attributes and product preferences need --segmenter kmeans")  # fmt: skip
    if opts.preferences and events is None:
        raise TrainerError("product preferences come from the transactions' categories: give --data or --sql")
    if opts.preferences and not isinstance(events, pd.DataFrame):
        raise TrainerError("product preferences are computed from the event rows in memory; train without "
                           "--pushdown to use --preferences")  # fmt: skip
    # Measured: scikit-learn's OpenMP threads on a busy 2-core machine spin against each other
    # (HistGradientBoosting 49 s instead of 0.2 s, K-Means 3.4 s instead of 0.9 s); one thread is both
    # faster and steadier at these sizes.
    with threadpool_limits(limits=1, user_api="openmp"):
        if opts.attributes or opts.preferences:
            return _train_with_attributes(events, customers, out_dir, opts, cleaning, source, progress)
        assert events is not None
        return _train(events, out_dir, opts, cleaning, source, progress)


def _train(
    events: pd.DataFrame | History,
    out_dir: Path,
    opts: TrainOptions,
    cleaning: dict[str, Any] | None,
    source: str,
    progress: Progress | None,
) -> TrainResult:
    timings: dict[str, float] = {}
    stage = _timer(progress, timings)
    history = as_history(events)
    with stage("features"):
        features = features_at(history, history.last_ms)
    with stage("segmentation"):
        previous = _previous_segmentation(opts.previous_bundle)
        name_checks: dict[str, Any] = {"checked": False, "why": "the RFM map's cell names are its definition"}
        if opts.segmenter == RFM:
            seg = fit_rfm_segmentation(features, seed=opts.seed)
        else:
            seg = fit_segmentation(features, k_range=opts.k_range, k=opts.k, previous=previous, seed=opts.seed)
            name_checks = check_names(seg, history, opts.purchase_horizon_days)
        labels = seg.labels.reindex(features.index)
        # Where the segments sit on the classic RFM map, for the report.
        rfm_crosstab = crosstab(labels, rfm_cells(features)[1])
    with stage("classifier"):
        clf = fit_classifier(features, labels, seed=opts.seed)
    with stage("purchase"):
        purchase = fit_purchase_models(history, horizon_days=opts.purchase_horizon_days, seed=opts.seed)
    with stage("forecast"):
        daily = history.daily_sales(labels)
        evaluation = backtest(daily, horizon=opts.forecast_horizon_days)
    with stage("bundle"):
        customers = _customer_table(features, seg, purchase)
        metrics = {
            "segmentation": {**seg.metrics, "rfm_crosstab": rfm_crosstab, "name_checks": name_checks},
            "classifier": clf.metrics,
            "purchase": purchase.metrics,
            "forecast": evaluation.metrics,
        }
        info = {
            "segment_names": {str(k): v for k, v in seg.names.items()},
            "segment_sizes": {str(k): int(v) for k, v in seg.sizes.items()},
            "segment_descriptions": {str(k): v for k, v in seg.descriptions.items()},
            "segmenter": seg.segmenter,
            "as_of_ms": int(features.attrs["as_of_ms"]),
            "source": source,
            "cleaning": cleaning or {},
            "customers": int(len(features)),
            "events": history.rows,
            "k_reason": seg.k_reason,
            "cluster_features": list(seg.cluster_features),
            "purchase": purchase.info,
            "classifier_report": clf.report,
        }
        serving = ServingModels(
            segments=seg.scorer,
            tree=clf.scorer,
            purchase=purchase.scorer,
            names=dict(seg.names),
            training_mix=training_mix(seg.sizes),
            as_of_ms=int(features.attrs["as_of_ms"]),
            descriptions=dict(seg.descriptions),
            segmenter=seg.segmenter,
        )
        manifest = write_bundle(
            out_dir,
            {SERVING: serving, SEGMENTATION: seg, CLASSIFIER: clf, PURCHASE: purchase},
            feature_spec=FEATURE_SPEC.to_dict(),
            data_fingerprint=history.fingerprint(),
            metrics={**metrics, "timings_s": dict(timings)},
            info=info,
            extra_files={
                CUSTOMERS_FILE: _parquet_bytes(customers),
                DAILY_SALES_FILE: daily.to_csv(index=False).encode(),
                FORECASTS_FILE: evaluation.forecasts.to_csv(index=False).encode(),
                BACKTEST_FILE: evaluation.backtest_frame.to_csv(index=False).encode(),
                RULES_FILE: clf.rules_text.encode(),
            },
            signing_key=opts.signing_key,
        )
    return TrainResult(Path(out_dir), manifest.version, metrics, timings)


PURCHASE_SKIPPED = "profile-only training: no transactions, so no purchase model (nothing to learn spend from)"
FORECAST_SKIPPED = "profile-only training: no transactions, so no sales history to forecast"


def _timer(progress: Progress | None, timings: dict[str, float]) -> Callable[[str], Any]:
    say = progress or (lambda _stage, _msg: None)

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        say(name, "started")
        start = time.perf_counter()
        yield
        timings[name] = time.perf_counter() - start
        say(name, f"done in {timings[name]:.1f}s")

    return stage


def _wide_namer(spec: AttributeSpec | None, prefs: PreferenceSpec | None, behaviour: bool) -> Any:
    """Names and descriptions: behaviour names, with the attribute and preference profiles added to the
    description, when transactions are there; names from the attributes alone for a profile-only model."""

    def namer(profiles: pd.DataFrame, population: pd.DataFrame, ids: pd.Series
              ) -> tuple[dict[int, str], dict[int, str]]:  # fmt: skip
        about: dict[int, list[str]] = {int(seg): [] for seg in profiles.index}
        attr: dict[int, dict] = {}
        if spec is not None:
            attr = attribute_profiles(spec, population[list(spec.columns)], ids)
            for seg in profiles.index:  # a segment with no member (degenerate data) is described empty
                attr.setdefault(int(seg), {"numeric": {}, "categorical": {}})
            for seg, p in attr.items():
                about.setdefault(seg, []).append(describe_attributes(p))
        dominant: dict[int, str] = {}
        if prefs is not None:
            for seg, p in preference_profiles(prefs, population[list(prefs.names)], ids).items():
                about.setdefault(seg, []).append(describe_preferences(p))
                if (category := dominant_category(p)) is not None:
                    dominant[seg] = category
        if not behaviour:
            assert spec is not None
            return name_attribute_segments(attr, list(spec.names)), {s: "; ".join(v) for s, v in about.items()}
        names = with_category(name_segments(profiles, population[list(FEATURE_NAMES)]), dominant)
        base = describe_segments(profiles, population[list(FEATURE_NAMES)])
        return names, {s: "; ".join([base[s], *about.get(s, [])]) for s in base}

    return namer


def _train_with_attributes(
    events: pd.DataFrame | History | None,
    table: CustomerTable | None,
    out_dir: Path,
    opts: TrainOptions,
    cleaning: dict[str, Any] | None,
    source: str,
    progress: Progress | None,
) -> TrainResult:
    """Training with customer attributes and/or product preferences joined to the behaviour features
    (``events`` given), or on attributes alone (profile-only)."""
    timings: dict[str, float] = {}
    stage = _timer(progress, timings)
    behaviour = events is not None
    history = as_history(events) if events is not None else None
    with stage("features"):
        if history is not None:
            features = features_at(history, history.last_ms)
            as_of_ms = int(features.attrs["as_of_ms"])
            modelled = features.index
        else:
            assert table is not None
            features = None
            as_of_ms = 0
            modelled = table.frame.index
        blocks = [] if features is None else [features]
        fspec: FeatureSpec = FEATURE_SPEC
        prefs = pref_frame = None
        if opts.preferences:
            assert isinstance(events, pd.DataFrame) and features is not None
            prefs, pref_frame = fit_preferences(events, features.index, opts.preferences)
            blocks.append(pref_frame)
            fspec = fspec.with_preferences(prefs)
        spec = encoded = None
        if table is not None:
            spec = fit_attribute_spec(table, opts.attributes, max_levels=opts.max_levels,
                                      reserved=FEATURE_NAMES if behaviour else (), customers=modelled)  # fmt: skip
            encoded = encode_customers(spec, table, modelled)
            blocks.append(encoded.frame)
            fspec = fspec.with_attributes(spec, behaviour=behaviour)
        wide = pd.concat(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        input_names = fspec.input_names
        cluster = (*(CLUSTER_FEATURES if behaviour else ()), *(prefs.names if prefs is not None else ()),
                   *(spec.columns if spec is not None else ()))  # fmt: skip
    with stage("segmentation"):
        numeric = [a.name for a in spec.attributes if a.kind == "numeric"] if spec is not None else []
        order_by = "monetary" if behaviour else (numeric[0] if numeric else spec.columns[0])  # type: ignore[union-attr]
        previous = _previous_segmentation(opts.previous_bundle, any_spec=True)
        seg = fit_segmentation(wide, k_range=opts.k_range, k=opts.k, previous=previous, seed=opts.seed,
                               input_names=input_names, cluster_features=cluster,
                               scale_groups=categorical_blocks(spec) if spec is not None else (), order_by=order_by,
                               namer=_wide_namer(spec, prefs, behaviour))  # fmt: skip
        labels = seg.labels.reindex(wide.index)
        static = [b for b in (pref_frame, encoded.frame if encoded is not None else None) if b is not None]
        if history is not None and features is not None:
            # Preferences are taken as of the end of the training data here, a small look-ahead in the
            # name check only (the check's earlier cutoffs recompute the behaviour features, not these).
            name_checks = check_names(seg, history, opts.purchase_horizon_days,
                                      attributes=pd.concat(static, axis=1) if static else None)  # fmt: skip
            rfm_crosstab = crosstab(labels, rfm_cells(features)[1])
        else:
            name_checks = {"checked": False, "why": "profile-only: no transactions to check names against; "
                                                     "attribute names state only the segment's medians"}
            rfm_crosstab = {}
        profiles = attribute_profiles(spec, encoded.frame, labels) if spec is not None and encoded else {}
        preference_profile = preference_profiles(prefs, pref_frame, labels) if prefs is not None else {}
    with stage("classifier"):
        clf = fit_classifier(wide, labels, seed=opts.seed, feature_names=cluster, input_names=input_names,
                             segment_names=seg.names)  # fmt: skip
    purchase: Any = None
    daily = evaluation = None
    if history is not None:
        with stage("purchase"):
            purchase = fit_purchase_models(history, horizon_days=opts.purchase_horizon_days, seed=opts.seed)
        with stage("forecast"):
            daily = history.daily_sales(labels)
            evaluation = backtest(daily, horizon=opts.forecast_horizon_days)
    with stage("bundle"):
        customers = _customer_table(wide, seg, purchase, behaviour_width=len(FEATURE_NAMES) if behaviour else 0)
        attribute_info = None if spec is None or table is None or encoded is None else {
            "names": list(spec.names),
            "kinds": {a.name: a.kind for a in spec.attributes},
            "columns": list(spec.columns),
            "spec": spec.to_dict(),
            "source": table.where,
            "coverage": encoded.coverage,
            "profiles": {str(k): v for k, v in profiles.items()},
            "profile_only": not behaviour,
        }
        preference_info = None if prefs is None else {
            "top": opts.preferences,
            "categories": list(prefs.categories),
            "columns": prefs.describe(),
            "profiles": {str(k): v for k, v in preference_profile.items()},
        }
        skipped = {} if behaviour else {"purchase": PURCHASE_SKIPPED, "forecast": FORECAST_SKIPPED}
        metrics = {
            "segmentation": {**seg.metrics, "rfm_crosstab": rfm_crosstab, "name_checks": name_checks},
            "classifier": clf.metrics,
            "purchase": purchase.metrics if purchase is not None else {"skipped": PURCHASE_SKIPPED},
            "forecast": evaluation.metrics if evaluation is not None else {"skipped": FORECAST_SKIPPED},
        }
        if spec is not None and encoded is not None:
            metrics["attributes"] = {
                "names": list(spec.names),
                "kinds": {a.name: a.kind for a in spec.attributes},
                "coverage": encoded.coverage,
                "profile_only": not behaviour,
                "profiles": {str(k): v for k, v in profiles.items()},
            }
        if preference_info is not None:
            metrics["preferences"] = preference_info
        info = {
            "segment_names": {str(k): v for k, v in seg.names.items()},
            "segment_sizes": {str(k): int(v) for k, v in seg.sizes.items()},
            "segment_descriptions": {str(k): v for k, v in seg.descriptions.items()},
            "segmenter": seg.segmenter,
            "as_of_ms": as_of_ms,
            "source": source or (table.where if table is not None else ""),
            "cleaning": cleaning or {},
            "customers": int(len(wide)),
            "events": history.rows if history is not None else 0,
            "k_reason": seg.k_reason,
            "cluster_features": list(seg.cluster_features),
            "purchase": purchase.info if purchase is not None else {"skipped": PURCHASE_SKIPPED},
            "classifier_report": clf.report,
            "attributes": attribute_info,
            "preferences": preference_info,
            "profile_only": not behaviour,
            "skipped": skipped,
        }
        serving = ServingModels(
            segments=seg.scorer,
            tree=clf.scorer,
            purchase=purchase.scorer if purchase is not None else None,
            names=dict(seg.names),
            training_mix=training_mix(seg.sizes),
            as_of_ms=as_of_ms,
            descriptions=dict(seg.descriptions),
            segmenter=seg.segmenter,
            attributes=spec,
            behaviour=behaviour,
            preferences=prefs,
        )
        artifacts: dict[str, Any] = {SERVING: serving, SEGMENTATION: seg, CLASSIFIER: clf}
        extra = {CUSTOMERS_FILE: _parquet_bytes(customers), RULES_FILE: clf.rules_text.encode()}
        if purchase is not None and daily is not None and evaluation is not None:
            artifacts[PURCHASE] = purchase
            extra.update({
                DAILY_SALES_FILE: daily.to_csv(index=False).encode(),
                FORECASTS_FILE: evaluation.forecasts.to_csv(index=False).encode(),
                BACKTEST_FILE: evaluation.backtest_frame.to_csv(index=False).encode(),
            })  # fmt: skip
        if history is not None:
            data_fp = history.fingerprint()
            if spec is not None and table is not None:
                data_fp["customer_table"] = table_fingerprint(spec, table)
        else:
            assert spec is not None and table is not None
            data_fp = table_fingerprint(spec, table)
        manifest = write_bundle(
            out_dir,
            artifacts,
            feature_spec=fspec.to_dict(),
            data_fingerprint=data_fp,
            metrics={**metrics, "timings_s": dict(timings)},
            info=info,
            extra_files=extra,
            signing_key=opts.signing_key,
        )
    return TrainResult(Path(out_dir), manifest.version, metrics, timings)


def fingerprint(events: pd.DataFrame) -> dict[str, Any]:
    """Rows, customers, time span and a content hash of the clean training events."""
    return EventHistory(events).fingerprint()


def _previous_segmentation(bundle: Path | None, any_spec: bool = False) -> SegmentationModel | None:
    """The previous bundle's segmentation. ``any_spec``: with attributes every retrain has a new spec (its
    medians and levels), so the hash is not required to match; segment ids are then kept only where the
    clustered columns are the same (see ``segmentation._assign_ids``)."""
    if bundle is None:
        return None
    expected = None if any_spec else FEATURE_SPEC.hash
    loaded = load_bundle(Path(bundle), expected_feature_hash=expected, only=[SEGMENTATION])
    return loaded.artifact(SEGMENTATION)


def _customer_table(
    features: pd.DataFrame, seg: SegmentationModel, purchase: Any, behaviour_width: int | None = None
) -> pd.DataFrame:
    """Per-customer features, segment, PCA position and predicted 90-day spend (the dashboard's table).

    ``behaviour_width``: the purchase models' columns are the first this many (the behaviour features,
    with attributes after them); None: all columns. Without a purchase model there is no spend column.
    """
    x = features.to_numpy()
    coords = seg.scorer.project_pca(x)
    table = features.copy()
    table["segment"] = seg.scorer.predict_segment(x)
    table["segment_name"] = table["segment"].map(seg.names)
    table["pca_1"], table["pca_2"] = coords[:, 0], coords[:, 1]
    if purchase is not None:
        px = x if behaviour_width is None else np.ascontiguousarray(x[:, :behaviour_width])
        table["predicted_spend_90d"] = np.asarray(purchase.predict(px), dtype=np.float64)
    return table.reset_index()


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
