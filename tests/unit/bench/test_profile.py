"""Summaries of py-spy's collapsed stacks: packages by innermost frame, top functions, worker stages."""

from __future__ import annotations

import pytest

from segstream.bench.profile import summarise

ROOT = "<module> (segstream:6);run_worker (segstream/streams/app.py:262)"
PROCESS = f"{ROOT};BatchProcessor.start (/work/segstream/streams/pipeline.py:145)"
COLLAPSED = "\n".join([
    f"{PROCESS};parse_event (/work/segstream/models/events.py:70);loads (/usr/lib/python3.11/json/__init__.py:346) 30",
    f"{PROCESS};RedisStateStore.apply (segstream/streams/state/redis_store.py:50) 20",
    f"{ROOT};_fetcher (faust/transport/consumer.py:177) 40",
    f"{ROOT};send (/venv/site-packages/aiokafka/producer/producer.py:400) 10",
    "garbage line without a count",
])  # fmt: skip


def test_shares_by_package_function_and_stage():
    out = summarise(COLLAPSED)
    assert out["samples"] == 100
    packages = {row["name"]: row["percent"] for row in out["by_package"]}
    assert packages["faust"] == pytest.approx(40)
    assert packages["json"] == pytest.approx(30)
    assert packages["segstream.streams (pipeline, outputs, state)"] == pytest.approx(20)
    assert packages["aiokafka"] == pytest.approx(10)
    top = out["top_functions"][0]
    assert top == {"name": "_fetcher (transport/consumer.py)", "percent": pytest.approx(40)}
    stages = {row["name"]: row["percent"] for row in out["stages_inclusive"]}
    assert stages["BatchProcessor.start (first phase: parse, apply, score, send)"] == pytest.approx(50)
    assert stages["parse_event"] == pytest.approx(30)
    assert stages["store.apply (Redis round trip)"] == pytest.approx(20)


def test_an_empty_profile_says_so():
    assert summarise("") == {"samples": 0}
