"""Live page: what the streaming worker is doing now (monitoring, segment mix, changes, streamed sales)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from segstream.dashboard import charts, monitoring, session, views
from segstream.models.contract import describe
from segstream.viz import figures
from segstream.viz.bundle_tables import BundleTables


def render() -> None:
    """Draw the page; the body refreshes by itself while auto refresh is on."""
    tables = session.require_bundle()
    session.page_header("Live", tables, "The streaming worker's view: throughput, segment mix and the latest changes")
    left, right = st.columns([1, 3])
    auto = left.toggle("Auto refresh", value=True, help="Re-read Redis and Kafka every few seconds")
    every = right.select_slider("Every", options=[2, 5, 10, 30, 60], value=5, format_func=lambda s: f"{s} s",
                                disabled=not auto, label_visibility="collapsed")  # fmt: skip
    st.fragment(run_every=every if auto else None)(_body)(tables)


def _body(tables: BundleTables) -> None:
    names = tables.segment_names
    reader, redis_why = session.live_reader()
    records, kafka_why = session.topic_records(session.settings().topics.monitoring, n=500)
    frame = monitoring.monitoring_frame(records)
    latest = monitoring.latest_totals(frame)
    watermark = None
    if reader is not None:
        watermark, problem = session.live_call(reader.watermark_ms)
        redis_why = problem or redis_why

    cols = st.columns(6)
    _metric(cols[0], "Events / s", latest.get("events_per_s"), "{:,.0f}")
    _metric(cols[1], "Processed", latest.get("processed"), "{:,.0f}")
    _metric(cols[2], "Dead letters", latest.get("dead_letters"), "{:,.0f}")
    _metric(cols[3], "Consumer lag", latest.get("lag"), "{:,.0f}", help="Messages not yet consumed, all partitions")
    _metric(cols[4], "Drift (PSI)", latest.get("drift_psi"), "{:.3f}",
            help="Population stability index of the live segment mix vs. training: <0.1 stable, 0.1-0.25 "
                 "some shift, >0.25 large shift")  # fmt: skip
    _metric(cols[5], "Duplicates skipped", latest.get("duplicates"), "{:,.0f}",
            help="Redelivered or repeated events recognised by event_id and not counted twice")  # fmt: skip
    st.caption(f"Event-time watermark (newest event folded into the state): {views.fmt_time(watermark)}.")
    _dead_letters(records, latest)
    if frame.empty:
        session.missing(
            "Monitoring (events/s, lag, dead letters, drift)",
            kafka_why or "no records on the monitoring topic yet; the worker publishes one every few seconds",
        )
    else:
        age_s = (pd.Timestamp.now(tz="UTC") - latest["time"]).total_seconds()
        stale_after = 3 * session.settings().worker.monitoring_interval_s
        if age_s > stale_after:
            st.warning(f"The newest monitoring record is {age_s / 60:,.1f} minutes old (the worker publishes one "
                       f"every {session.settings().worker.monitoring_interval_s:g} s): the worker may be stopped. "
                       "Figures below are its last report.", icon=":material/schedule:")  # fmt: skip
        st.caption(f"Newest monitoring record {latest['time']:%Y-%m-%d %H:%M:%S} UTC; figures add up the newest "
                   f"record of each of {latest['workers']} worker(s); {len(frame)} records read.")  # fmt: skip

    left, right = st.columns(2)
    mix = monitoring.mix_frame(records)
    training = {int(k): int(v) for k, v in tables.manifest.info.get("segment_sizes", {}).items()} or tables.customers[
        "segment"
    ].value_counts().to_dict()
    counts = None
    if reader is not None:
        counts, problem = session.segment_counts()
        redis_why = problem or redis_why
    with left:
        if not mix.empty:
            st.plotly_chart(charts.mix_over_time_figure(mix, names))
        else:
            st.plotly_chart(figures.segment_size_figure(training, names, "Segment sizes at training"))
            st.caption("The mix over time appears once the worker publishes monitoring records.")
    with right:
        if counts:
            st.plotly_chart(charts.mix_comparison_figure(counts, training, names))
        else:
            session.missing("Live segment mix", redis_why or "no scored customers in Redis yet")
    _throughput(frame)

    st.subheader("Latest segment changes")
    _changes(reader, names)

    st.subheader("Streamed sales")
    if reader is None:
        session.missing("Streamed daily sales", redis_why)
        return
    sales, problem = session.live_call(reader.daily_sales)
    if sales is None or sales.empty:
        session.missing("Streamed daily sales", problem or "the worker has not streamed any sales yet")
    else:
        st.plotly_chart(charts.streamed_sales_figure(sales, names))


def _throughput(frame: pd.DataFrame) -> None:
    shown = [(c, t, u, color) for c, t, u, color in (
        ("events_per_s", "Throughput", "events per second", "#0072B2"),
        ("lag", "Consumer lag", "messages behind", "#D55E00"),
        ("drift_psi", "Drift of the segment mix (PSI)", "PSI", "#CC79A7"),
        ("dead_letter_share", "Dead-letter share", "share of events", "#E69F00"),
    ) if c in frame and frame[c].notna().any()]  # fmt: skip
    for col, (column, title, unit, color) in zip(st.columns(max(len(shown), 1)), shown, strict=False):
        col.plotly_chart(charts.metric_line_figure(frame, column, title, unit, color))


def _dead_letters(records: list[dict[str, Any]], latest: dict[str, Any]) -> None:
    """The dead-letter share and rate over the workers' alert window, the top reasons, and the alert."""
    share = latest.get("dead_letter_share")
    if share is None:
        return  # records from a worker that does not report it (or none at all: said below)
    threshold = latest.get("dead_letter_alert_share") or session.settings().worker.dead_letter_alert_share
    window_s = latest.get("dead_letter_window_s") or session.settings().worker.dead_letter_alert_window_s
    recent = monitoring.dead_letter_reasons(records, "window")
    total = monitoring.dead_letter_reasons(records, "total")
    top = recent or total
    # The workers' own verdict (it also wants a minimum of events in the window); else the share alone.
    alert = latest["dead_letter_alert"] if "dead_letter_alert" in latest else share >= threshold
    if alert:
        reasons = ", ".join(f"{describe(r)} (`{r}`) ×{c:,}" for r, c in list(top.items())[:3]) or "unknown"
        st.error(f"**Dead-letter alert:** {share:.1%} of the events over the last {window_s:g} s were "
                 f"dead-lettered (alert at {threshold:.0%}). Top reasons: {reasons}. Check the producer of "
                 "`transactions`; `segstream dead-letters` shows the messages.", icon=":material/report:")  # fmt: skip
    cols = st.columns(3)
    _metric(cols[0], f"Dead-letter share (last {window_s:g} s)", 100 * share, "{:.1f}%",
            help=f"Dead letters / (dead letters + valid events), all workers; alert at {threshold:.0%}")  # fmt: skip
    dead = latest.get("dead_letters_window")
    _metric(cols[1], f"Dead letters / s (last {window_s:g} s)", None if dead is None else dead / window_s, "{:,.2f}")
    cols[2].markdown("**Top dead-letter reasons**  \n" + ("  \n".join(
        f"`{r}` {describe(r)}: {recent.get(r, 0):,} recently, {total.get(r, 0):,} in all"
        for r in list(top)[:5]) or "none"))  # fmt: skip


def _changes(reader: Any, names: dict[int, str]) -> None:
    records, kafka_why = session.topic_records(session.settings().topics.segment_changes, n=100)
    source = "segment-changes topic"
    if not records and reader is not None:
        records, problem = session.live_call(reader.recent_changes, 50)
        records = records or []
        source = "customer histories in Redis"
        kafka_why = problem or kafka_why
    if not records:
        session.missing("Segment changes", kafka_why or "no customer has changed segment yet")
        return
    st.dataframe(views.changes_table(records, names), hide_index=True, height=min(38 + 35 * len(records), 420))
    st.caption(f"Newest first, from the {source}.")


def _metric(col: Any, label: str, value: Any, fmt: str, help: str | None = None) -> None:  # noqa: A002
    shown = "—" if value is None or (isinstance(value, float) and pd.isna(value)) else fmt.format(float(value))
    col.metric(label, shown, help=help)


if __name__ == "__main__":
    render()
