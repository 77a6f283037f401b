"""The Streamlit dashboard: Live, Customer, What-if, Segments and Forecasts pages (read-only)."""

from __future__ import annotations

from pathlib import Path


def app_path() -> Path:
    """The Streamlit entry script (what ``streamlit run`` needs)."""
    return Path(__file__).resolve().parent / "app.py"
