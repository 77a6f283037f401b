"""Streamlit glue shared by the pages: settings, the cached bundle and models, live readers, messages.

Every accessor either returns what the page needs or explains what is missing; only a missing bundle stops
a page (there is nothing to show without one). Live state (Redis, Kafka) is optional everywhere.
"""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

from segstream.dashboard.data import OFFLINE_ENV, Models, default_bundle_path, load_models, open_tables
from segstream.dashboard.errors import DashboardError, LiveStateUnavailable
from segstream.dashboard.live_redis import LiveReader
from segstream.dashboard.live_topics import tail_topic
from segstream.settings import Settings
from segstream.viz.bundle_tables import BundleTables

BUNDLE_KEY = "bundle_path"
HOW_TO_START_LIVE = ("Start the streaming side with `segstream demo`, or `segstream stack up` then "
                     "`segstream worker`; point `SEGSTREAM_REDIS_URL` / `SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS` "
                     "at them if they run elsewhere.")  # fmt: skip


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    """Settings from the environment, read once per server."""
    return Settings.load()


def offline() -> bool:
    """True when the dashboard was started with ``--no-live`` (bundle only, no connection attempts)."""
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0", "false", "no")


def bundle_path() -> str:
    """The bundle the user chose in the sidebar (or the default)."""
    if BUNDLE_KEY not in st.session_state:
        st.session_state[BUNDLE_KEY] = default_bundle_path(settings())
    return str(st.session_state[BUNDLE_KEY])


@st.cache_resource(show_spinner="Opening the bundle...", max_entries=4)
def _tables(path: str) -> BundleTables:
    return open_tables(path)


def bundle_or_error() -> tuple[BundleTables | None, str | None]:
    """The opened bundle, or None and why not."""
    try:
        return _tables(bundle_path()), None
    except DashboardError as exc:
        return None, str(exc)


def require_bundle() -> BundleTables:
    """The opened bundle; otherwise show a clear error with the fix and stop the page."""
    tables, problem = bundle_or_error()
    if tables is None:
        st.error(f"**Cannot open the model bundle.** {problem}")
        st.markdown("Type a bundle directory in the sidebar, or start the app with "
                    "`segstream dashboard --bundle DIR`. Train one with "
                    "`segstream train --data FILE --out DIR --promote`.")  # fmt: skip
        st.stop()
    return tables


@st.cache_resource(show_spinner="Loading the models...", max_entries=2)
def _models(path: str) -> Models:
    return load_models(path, settings())


def models_or_error(tables: BundleTables) -> tuple[Models | None, str | None]:
    """The unpickled models of the bundle, or None and why not."""
    try:
        return _models(str(tables.path)), None
    except DashboardError as exc:
        return None, str(exc)


@st.cache_resource(show_spinner=False, ttl=20)
def _reader(url: str, prefix: str) -> tuple[LiveReader | None, str | None]:
    del url, prefix  # cache keys; the reader uses the settings
    try:
        return LiveReader.connect(settings().redis), None
    except LiveStateUnavailable as exc:
        return None, str(exc)


def live_reader() -> tuple[LiveReader | None, str | None]:
    """A read-only Redis reader, or None and why not (``--no-live``, or Redis unreachable)."""
    if offline():
        return None, "live state is switched off (--no-live)"
    redis = settings().redis
    return _reader(redis.url, redis.key_prefix)


def live_call(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """Run a reader method; a Redis failure mid-session becomes a message instead of a traceback."""
    import redis

    try:
        return fn(*args, **kwargs), None
    except (redis.RedisError, OSError, ValueError) as exc:
        _reader.clear()
        return None, f"reading Redis failed ({exc})"


@st.cache_data(show_spinner=False, ttl=30)
def _segment_counts(url: str, prefix: str) -> tuple[dict[int, int] | None, str | None]:
    reader, why = _reader(url, prefix)
    return live_call(reader.segment_counts) if reader is not None else (None, why)


def segment_counts() -> tuple[dict[int, int] | None, str | None]:
    """Customers per current segment in Redis (a SCAN over every customer, so cached for 30 s)."""
    if offline():
        return None, "live state is switched off (--no-live)"
    redis = settings().redis
    return _segment_counts(redis.url, redis.key_prefix)


@st.cache_data(show_spinner=False, ttl=15)
def _kafka_problem(bootstrap: str) -> str | None:
    del bootstrap
    try:
        tail_topic(settings().kafka, settings().topics.monitoring, n=1, timeout_s=1.5)
    except LiveStateUnavailable as exc:
        return str(exc)
    return None


@st.cache_data(show_spinner=False, ttl=4)
def _tail(topic: str, n: int) -> tuple[list[dict[str, Any]], str | None]:
    try:
        return tail_topic(settings().kafka, topic, n=n, timeout_s=2.0), None
    except LiveStateUnavailable as exc:
        return [], str(exc)


def topic_records(topic: str, n: int = 200) -> tuple[list[dict[str, Any]], str | None]:
    """The newest records of an output topic, or [] and why not."""
    if offline():
        return [], "live state is switched off (--no-live)"
    problem = _kafka_problem(settings().kafka.bootstrap_servers)
    if problem:
        return [], problem
    return _tail(topic, n)


def missing(what: str, why: str | None, hint: str = HOW_TO_START_LIVE) -> None:
    """A consistent 'this part needs live state' note."""
    st.info(f"**{what}: not available.** {why or 'no data yet'}.  \n{hint}", icon=":material/cloud_off:")


def page_header(title: str, tables: BundleTables, caption: str) -> None:
    """Title plus one line naming the bundle the page shows."""
    st.title(title)
    st.caption(f"{caption} · bundle `{tables.manifest.version}`")
