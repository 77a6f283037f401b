"""Customer page: look up one customer's features, segment, change history, predicted spend and PCA spot."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from segstream.dashboard import charts, session, views
from segstream.dashboard.data import feature_row
from segstream.models.features import FEATURE_NAMES
from segstream.models.preferences import preference_summary
from segstream.viz import figures
from segstream.viz.bundle_tables import BundleTables


def render() -> None:
    """Draw the page."""
    tables = session.require_bundle()
    session.page_header("Customer", tables, "One customer: features, segment, history and predicted spend")
    names, customers = tables.segment_names, tables.customers
    examples = customers.sort_values("predicted_spend_90d", ascending=False)["customer_id"].head(3).tolist()
    hint = f"e.g. {examples[0]}" if examples else "a customer id"
    if "customer_id" not in st.session_state and st.query_params.get("id"):
        st.session_state["customer_id"] = st.query_params["id"]  # deep link: /customer?id=C00042
    customer_id = st.text_input("Customer id", key="customer_id", placeholder=hint,
                                help="The id as it appears in the events (customer_id)").strip()  # fmt: skip
    if not customer_id:
        st.markdown("Type a customer id above. Examples from the bundle (highest predicted spend): "
                    + ", ".join(f"`{c}`" for c in examples))  # fmt: skip
        return

    reader, live_why = session.live_reader()
    live = None
    if reader is not None:
        live, problem = session.live_call(reader.customer, customer_id)
        live_why = problem or live_why
    trained = customers.loc[customers["customer_id"] == customer_id]
    if live is None and trained.empty:
        where = "live state or " if reader is not None else ""
        st.error(f"No customer with id `{customer_id}` in the {where}bundle ({len(customers):,} customers).")
        if reader is None:
            st.caption(f"Live state was not searched: {live_why}.")
        return

    if live is not None:
        features, segment = live.features, live.segment
        st.success(f"Live state from Redis, as of the watermark {views.fmt_time(live.watermark_ms)}"
                   f" (model {live.model_version or '?'})", icon=":material/bolt:")  # fmt: skip
        if live.pending is not None and live.pending != live.segment:
            st.caption(f"Pending move to {figures.segment_label(live.pending, names)}: seen in the latest "
                       "evaluation(s), not yet held long enough to be emitted (hysteresis).")  # fmt: skip
    else:
        row = trained.iloc[0]
        features, segment = {f: float(row[f]) for f in FEATURE_NAMES if f in row}, int(row["segment"])
        st.info(f"From the bundle's training snapshot (as of {views.fmt_time(tables.manifest.info.get('as_of_ms'))})."
                f" Live state: {'customer not seen by the worker' if reader is not None else live_why}.",
                icon=":material/inventory_2:")  # fmt: skip

    spend, pca, spend_note = _predictions(tables, features, trained, live is not None)
    _headline(segment, names, features, spend, spend_note)

    left, right = st.columns([1, 1])
    left.plotly_chart(charts.customer_percentile_figure(features, customers, segment, names))
    right.plotly_chart(_pca_with(customers, names, customer_id, pca))

    left, right = st.columns([1, 1])
    with left:
        st.subheader("Features")
        st.dataframe(views.features_table(features), hide_index=True, height=35 * (len(features) + 1) + 3)
    with right:
        st.subheader("Segment history")
        _history(live, names, live_why)
    if live is not None and live.categories:
        _preferences(live.categories)


def _preferences(categories: dict[str, int]) -> None:
    summary = preference_summary(categories)
    st.subheader("Product preferences")
    st.caption(f"Favourite category: **{summary['favourite_category'] or '-'}** "
               f"({summary['categories_bought']} categories bought; net spend, returns subtracted)")  # fmt: skip
    st.dataframe(pd.DataFrame({"category": list(summary["spend"]), "net spend": list(summary["spend"].values()),
                               "share": [f"{v:.0%}" for v in summary["share"].values()]}), hide_index=True)  # fmt: skip


def _predictions(tables: BundleTables, features: dict[str, float], trained: pd.DataFrame,
                 is_live: bool) -> tuple[float | None, tuple[float, float] | None, str]:  # fmt: skip
    """Predicted 90-day spend and PCA position: from the models for live features, else from the table."""
    if not is_live and not trained.empty:
        row = trained.iloc[0]
        return float(row["predicted_spend_90d"]), (float(row["pca_1"]), float(row["pca_2"])), "at training time"
    models, why = session.models_or_error(tables)
    if models is None:
        return None, None, f"models not loadable: {why}"
    x = feature_row(features)
    return models.predicted_spend(x), models.pca(x), "from the live features"


def _headline(segment: int | None, names: dict[int, str], features: dict[str, float], spend: float | None,
              note: str) -> None:  # fmt: skip
    cols = st.columns(5)
    if segment is None:
        cols[0].metric("Segment", "not scored yet")
    else:
        cols[0].markdown(views.segment_badge("Segment", segment, names), unsafe_allow_html=True)
    cols[1].metric("90-day spend (predicted)", "—" if spend is None else f"{spend:,.2f}", help=note)
    cols[2].metric("Purchases", f"{features.get('frequency', 0):,.0f}")
    cols[3].metric("Net spend (all time)", f"{features.get('monetary', 0):,.2f}")
    cols[4].metric("Days since last purchase", f"{features.get('recency_days', 0):,.0f}")


def _pca_with(customers: pd.DataFrame, names: dict[int, str], customer_id: str,
              pca: tuple[float, float] | None) -> go.Figure:  # fmt: skip
    in_table = (customers["customer_id"] == customer_id).any()
    fig = figures.pca_scatter(customers, names, highlight=customer_id if in_table and pca is None else None)
    if pca is not None:
        fig.add_trace(
            go.Scatter(
                x=[pca[0]],
                y=[pca[1]],
                mode="markers+text",
                name=customer_id,
                text=[customer_id],
                textposition="top center",
                marker={"size": 18, "symbol": "star", "color": "black", "line": {"width": 1, "color": "white"}},
            )
        )
    fig.update_layout(title="Where the customer sits among all customers (PCA)")
    return fig


def _history(live: Any, names: dict[int, str], why: str | None) -> None:
    if live is None:
        session.missing("Change history", why or "the worker has not seen this customer")
        return
    if not live.history:
        st.write("No segment changes recorded for this customer yet.")
        return
    st.dataframe(views.changes_table(live.history, names).drop(columns=["customer", "model"]), hide_index=True)


if __name__ == "__main__":
    render()
