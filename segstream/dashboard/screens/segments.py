"""Segments page: who the segments are and how good the models are (bundle only)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from segstream.dashboard import session
from segstream.viz import bundle_tables, figures


def render() -> None:
    """Draw the page."""
    tables = session.require_bundle()
    session.page_header(
        "Segments", tables, "Customer segments (K-Means or the RFM map) and how well a decision tree explains them"
    )
    customers, names = tables.customers, tables.segment_names
    seg_metrics = tables.metrics.get("segmentation", {})
    clf = tables.metrics.get("classifier", {})

    cols = st.columns(4)
    cols[0].metric("Segments (k)", seg_metrics.get("k", len(names)), help=seg_metrics.get("k_reason"))
    cols[1].metric("Customers", f"{len(customers):,}")
    cols[2].metric("Silhouette", f"{seg_metrics.get('silhouette', float('nan')):.2f}",
                   help="Separation of the segments, -1..1 (higher is better)")  # fmt: skip
    cols[3].metric("Tree accuracy", f"{clf.get('accuracy', float('nan')):.1%}",
                   help="Decision tree vs. K-Means segment on held-out customers")  # fmt: skip

    left, right = st.columns([3, 2])
    left.plotly_chart(figures.pca_scatter(customers, names))
    sizes = customers["segment"].value_counts().to_dict()
    right.plotly_chart(figures.segment_size_figure(sizes, names, "Customers per segment"))

    st.subheader("Who they are")
    st.dataframe(bundle_tables.segment_overview(tables.metrics, names), hide_index=True)

    st.subheader("Profiles")
    st.plotly_chart(figures.segment_profile_figure(customers, names))
    table = figures.segment_profile_table(customers, names)
    st.dataframe(_style_profile(table))
    st.caption("Means per segment in original units: days, purchases, money (net of returns), purchases per 30 days.")

    st.subheader("Choosing k")
    left, right = st.columns(2)
    left.plotly_chart(figures.elbow_figure(seg_metrics))
    right.plotly_chart(figures.silhouette_figure(seg_metrics))
    if seg_metrics.get("k_reason"):
        st.caption(f"Why k = {seg_metrics.get('k')}: {seg_metrics['k_reason']}")
    criteria = bundle_tables.criteria_table(tables.metrics)
    if not criteria.empty:
        st.dataframe(criteria, hide_index=True)

    st.subheader("Decision tree classifier")
    cols = st.columns(4)
    for col, (label, key) in zip(
        cols,
        (
            ("Accuracy", "accuracy"),
            ("Precision (macro)", "precision_macro"),
            ("Recall (macro)", "recall_macro"),
            ("F1 (macro)", "f1_macro"),
        ),
        strict=True,
    ):
        col.metric(label, f"{clf[key]:.1%}" if key in clf else "—")
    left, right = st.columns([3, 2])
    if clf.get("confusion_matrix"):
        left.plotly_chart(figures.confusion_figure(clf, names))
    else:
        left.info("The bundle has no classifier metrics.")
    right.markdown(f"Depth ≤ {clf.get('max_depth', '?')}, {clf.get('n_leaves', '?')} leaves, trained on "
                   f"{clf.get('train_rows', '?')} customers, tested on {clf.get('test_rows', '?')}.")  # fmt: skip
    with right.expander("The tree's rules", expanded=False):
        try:
            st.code(tables.rules_text, language=None)
        except KeyError:
            st.write("No rules file in this bundle.")


def _style_profile(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out.index = [f"{i}" for i in out.index]
    out.index.name = "segment"
    return out


if __name__ == "__main__":
    render()
