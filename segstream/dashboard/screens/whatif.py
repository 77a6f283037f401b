"""What-if page: edit a customer's features and see the K-Means and decision-tree segments, with the path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from segstream.dashboard import session, views
from segstream.dashboard.data import Models, feature_row
from segstream.models.features import FEATURE_NAMES
from segstream.models.scoring import PathStep
from segstream.viz import figures

COUNT_FEATURES = {"frequency", "returns_count", "purchases_30d", "purchases_90d", "purchases_365d"}


def render() -> None:
    """Draw the page."""
    tables = session.require_bundle()
    session.page_header(
        "What-if", tables, "Change a customer's features and see which segment each model picks, and why"
    )
    models, why = session.models_or_error(tables)
    if models is None:
        st.error(f"**The models of this bundle cannot be loaded**, so nothing can be scored. {why}")
        return
    names, customers = models.names, tables.customers

    base_options = [f"segment:{s}" for s in sorted(names)] + ["customer"]
    left, right = st.columns([2, 2])
    base_kind = left.selectbox("Start from", base_options, key="whatif_base",
                               format_func=lambda o: "a customer id…" if o == "customer" else
                               f"typical {figures.segment_label(int(o.split(':')[1]), names)} (median)")  # fmt: skip
    base = _base_values(customers, base_kind, right)
    if base is None:
        return

    edited = [f for f in FEATURE_NAMES if f in _model_features(models)]
    st.markdown("**Edit the features the models use** (others stay at the starting values)")
    values = dict(base)
    cols = st.columns(3)
    for i, name in enumerate(edited):
        values[name] = _slider(cols[i % 3], name, customers[name], float(base[name]), key=f"wi_{base_kind}_{name}")
    with st.expander("Other features (not used by the models)"):
        st.dataframe(pd.DataFrame({"feature": [f for f in FEATURE_NAMES if f not in edited],
                                   "value": [round(values[f], 2) for f in FEATURE_NAMES if f not in edited]}),
                     hide_index=True)  # fmt: skip

    x = feature_row(values)
    kmeans, tree = models.kmeans_segment(x), models.tree_segment(x)
    cols = st.columns(3)
    cols[0].markdown(views.segment_badge("K-Means segment", kmeans, names), unsafe_allow_html=True)
    cols[1].markdown(views.segment_badge("Decision-tree segment", tree, names), unsafe_allow_html=True)
    spend = models.predicted_spend(x)
    cols[2].metric("90-day spend (predicted)", "—" if spend is None else f"{spend:,.2f}")
    if kmeans == tree:
        st.success("Both models agree.", icon=":material/check_circle:")
    else:
        st.warning("The models disagree: the tree is an approximation of K-Means, usually near a segment border.",
                   icon=":material/call_split:")  # fmt: skip

    left, right = st.columns([1, 1])
    with left:
        st.subheader("Why the tree says so")
        st.markdown(path_markdown(models.tree_path(x), tree, names))
    with right:
        fig = figures.pca_scatter(customers, names)
        px, py = models.pca(x)
        fig.add_trace(
            go.Scatter(
                x=[px],
                y=[py],
                mode="markers+text",
                text=["what-if"],
                textposition="top center",
                name="what-if customer",
                marker={"size": 18, "symbol": "star", "color": "black"},
            )
        )
        fig.update_layout(title="The edited customer on the PCA plot")
        st.plotly_chart(fig)


def path_markdown(steps: list[PathStep], leaf: int, names: dict[int, str]) -> str:
    """The decision path as a numbered list ending in the leaf's segment."""
    lines = []
    for i, step in enumerate(steps, 1):
        verdict = "≤" if step.direction == "<=" else ">"
        lines.append(f"{i}. **{step.feature}** is {step.value:,.2f}, which is {verdict} {step.threshold:,.2f}")
    lines.append(f"{len(steps) + 1}. → leaf: **{figures.segment_label(leaf, names)}**")
    return "\n".join(lines)


def _base_values(
    customers: pd.DataFrame, kind: str, where: st.delta_generator.DeltaGenerator
) -> dict[str, float] | None:
    if kind == "customer":
        cid = where.text_input("Customer id", key="whatif_customer").strip()
        if not cid:
            where.caption("Type an id from the bundle, e.g. " + ", ".join(customers["customer_id"].head(3)))
            return None
        row = customers.loc[customers["customer_id"] == cid]
        if row.empty:
            where.error(f"No customer with id `{cid}` in the bundle ({len(customers):,} customers).")
            return None
        return {f: float(row.iloc[0][f]) for f in FEATURE_NAMES}
    members = customers.loc[customers["segment"] == int(kind.split(":")[1])]
    members = members if not members.empty else customers
    where.caption(f"Median of {len(members):,} customers of this segment in the training data.")
    return {f: float(members[f].median()) for f in FEATURE_NAMES}


def _model_features(models: Models) -> set[str]:
    return set(models.segmentation.scorer.feature_names) | set(models.classifier.scorer.feature_names)


def _slider(col: st.delta_generator.DeltaGenerator, name: str, column: pd.Series, value: float, key: str) -> float:
    finite = column[np.isfinite(column)]
    lo = float(min(finite.min(), value, 0.0)) if len(finite) else 0.0
    hi = float(max(finite.quantile(0.99) * 1.5, value, lo + 1.0)) if len(finite) else value + 1.0
    label = f"{name} ({views.unit_of(name)})"
    if name in COUNT_FEATURES:
        return float(col.slider(label, int(np.floor(lo)), int(np.ceil(hi)), int(round(value)), key=key))
    step = _nice_step(hi - lo)
    return float(col.slider(label, round(lo, 2), round(hi, 2), round(value, 2), step=step, key=key))


def _nice_step(span: float) -> float:
    raw = max(span / 200.0, 0.01)
    magnitude = 10 ** np.floor(np.log10(raw))
    return float(max(round(raw / magnitude) * magnitude, 0.01))


if __name__ == "__main__":
    render()
