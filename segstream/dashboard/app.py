"""The Streamlit entry point: page setup, the sidebar (bundle choice, connection status) and navigation.

Run with ``segstream dashboard [--bundle DIR] [--port P]`` (or ``streamlit run`` on this file). Each page is
its own script under ``screens/`` (not ``pages/``: Streamlit would auto-discover that folder and serve
its files without this entry script); all of them read through :mod:`segstream.dashboard.session`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from segstream.dashboard import auth, session, views
from segstream.settings import DashboardSettings

PAGES = Path(__file__).resolve().parent / "screens"

st.set_page_config(page_title="segstream", page_icon=":material/donut_small:", layout="wide")
auth.gate(DashboardSettings())  # before anything reads customer data

with st.sidebar:
    st.markdown("### segstream")
    st.caption("Real-time customer segmentation")
    session.bundle_path()  # seeds the field with the default before the widget reads it
    st.text_input(
        "Model bundle directory",
        key=session.BUNDLE_KEY,
        help="A bundle written by `segstream train`; defaults to --bundle or <models root>/current.",
    )
    tables, problem = session.bundle_or_error()
    if tables is not None:
        info = tables.manifest.info
        st.success(f"Bundle `{tables.manifest.version}`  \n{info.get('customers', '?')} customers, "
                   f"{len(tables.segment_names)} segments", icon=":material/inventory_2:")  # fmt: skip
    else:
        st.error("No usable bundle", icon=":material/error:")
    reader, why = session.live_reader()
    if reader is not None:
        watermark, why = session.live_call(reader.watermark_ms)
        st.success(f"Redis: live state  \nwatermark {views.fmt_time(watermark)}", icon=":material/bolt:")
    else:
        st.warning(f"Redis: not connected  \n{why}", icon=":material/cloud_off:")

navigation = st.navigation([
    st.Page(str(PAGES / "live.py"), title="Live", icon=":material/monitoring:", url_path="live", default=True),
    st.Page(str(PAGES / "customer.py"), title="Customer", icon=":material/person_search:", url_path="customer"),
    st.Page(str(PAGES / "whatif.py"), title="What-if", icon=":material/tune:", url_path="what-if"),
    st.Page(str(PAGES / "segments.py"), title="Segments", icon=":material/scatter_plot:", url_path="segments"),
    st.Page(str(PAGES / "forecasts.py"), title="Forecasts", icon=":material/trending_up:", url_path="forecasts"),
])  # fmt: skip
navigation.run()
