"""Security properties that need no servers: secrets never reach logs, customer ids are validated before they
become Redis keys, the worker's HTTP side has no write operation, and the dashboard cannot write.

The same properties against real servers (a password-protected Redis, the worker process with secrets
in its environment, tampered bundles) are in ``tests/integration/test_security_redis.py``.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.models.errors import EventValidationError
from segstream.models.events import MAX_ID_LENGTH, is_valid_customer_id, validate_payload
from segstream.models.state_keys import KeySpace, key_slot
from segstream.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "SEGSTREAM_REDIS_PASSWORD": "redis-pw-3f9a1c",
    "SEGSTREAM_REDIS_URL": "redis://user:url-pw-77d2e0@127.0.0.1:1/0",
    "SEGSTREAM_KAFKA_SASL_PASSWORD": "sasl-pw-a1b2c3",
    "SEGSTREAM_MODEL_SIGNING_KEY": "signing-key-9e8d7c",
}
SECRET_VALUES = ("redis-pw-3f9a1c", "url-pw-77d2e0", "sasl-pw-a1b2c3", "signing-key-9e8d7c")


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SEGSTREAM_"):
            monkeypatch.delenv(name)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SEGSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SEGSTREAM_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("SEGSTREAM_KAFKA_SASL_USERNAME", "svc")


def _assert_no_secret(text: str) -> None:
    leaked = [s for s in SECRET_VALUES if s in text]
    assert not leaked, f"secrets leaked: {leaked}"


# ------------------------------------------------------------------------------------------- secrets


def test_settings_never_show_secrets(secret_env: None, caplog: pytest.LogCaptureFixture) -> None:
    s = Settings.load()
    # The secrets are really loaded (so the test is not vacuous) ...
    assert s.redis.password is not None and s.redis.password.get_secret_value() == "redis-pw-3f9a1c"
    assert s.models.signing_key is not None and s.kafka.sasl_password is not None
    # ... and no way of printing or logging the settings shows them.
    # (model_dump() in python mode returns the raw URL on purpose: clients need it. Log mode="json".)
    logging.getLogger("segstream.test").warning("settings %s %r %s", s, s, s.model_dump(mode="json"))
    shown = [str(s), repr(s), s.model_dump_json(), caplog.text]
    for section in (s.kafka, s.redis, s.models):
        shown += [str(section), repr(section), section.model_dump_json()]
    _assert_no_secret("\n".join(shown))


def test_worker_construction_logs_no_secret(secret_env: None, caplog: pytest.LogCaptureFixture,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    pytest.importorskip("faust")
    from segstream.streams.app import create_worker

    monkeypatch.setenv("SEGSTREAM_MODEL_ROOT", str(tmp_path / "models"))
    caplog.set_level(logging.DEBUG)
    settings_ = Settings.load()
    app, runtime = create_worker(settings_, datadir=tmp_path / "faust")
    text = "\n".join([caplog.text, repr(app.conf.broker), str(runtime.worker_id), repr(runtime.settings)])
    _assert_no_secret(text)
    # The credentials do reach the client that needs them.
    assert app.conf.broker_credentials is not None


def test_cli_error_names_redis_without_its_password(secret_env: None) -> None:
    from segstream.cli.main import cli

    result = CliRunner().invoke(cli, ["customer", "C1"])
    assert result.exit_code == 2, result.output
    assert "127.0.0.1:1" in result.output
    _assert_no_secret(result.output)


# -------------------------------------------------------------------------------------- customer ids

_BAD_IDS = ["", " ", "a b", "a\nb", "a\tb", "a\rb", "\x00", "x\x1b[2J", "a\u2028b", "x" * (MAX_ID_LENGTH + 1),
            "\ud800", "a\u200bb", "\u00a0"]  # fmt: skip


@pytest.mark.parametrize("bad", _BAD_IDS)
def test_bad_customer_ids_never_become_keys(bad: str) -> None:
    assert not is_valid_customer_id(bad)
    with pytest.raises(EventValidationError, match="customer_id"):
        validate_payload({"event_id": "e1", "customer_id": bad, "timestamp": 1_700_000_000_000, "amount": 1})


@pytest.mark.parametrize("bad", [123, 1.5, True, None, ["C1"], {"id": "C1"}])
def test_non_string_customer_ids_are_rejected(bad: object) -> None:
    with pytest.raises(EventValidationError, match="customer_id"):
        validate_payload({"event_id": "e1", "customer_id": bad, "timestamp": 1_700_000_000_000, "amount": 1})


@settings(max_examples=300)
@given(st.text(min_size=1, max_size=MAX_ID_LENGTH))
def test_every_accepted_id_stays_inside_its_customer_key(customer_id: str) -> None:
    keys = KeySpace("segstream")
    if not is_valid_customer_id(customer_id):
        return
    key = keys.customer(customer_id)
    root = keys.shard_roots[keys.shard_of(customer_id)]
    assert key == f"{root}:c:{customer_id}"
    assert key_slot(key) == key_slot(root)  # braces in an id cannot move the key out of its shard's slot
    # No whitespace or control characters: the key cannot break a protocol line or a log line.
    assert key.isprintable() and not any(ch.isspace() for ch in key)
    key.encode("utf-8")  # no lone surrogates: every accepted id is a valid Redis key


def test_customer_cli_validates_the_id_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    from segstream.cli.main import cli

    monkeypatch.setenv("SEGSTREAM_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens: must not be reached
    result = CliRunner().invoke(cli, ["customer", "a b\nc"])
    assert result.exit_code == 2
    assert "not valid" in result.output and "not reachable" not in result.output


# -------------------------------------------------------------------------------------- worker HTTP


class _RecordingStore:
    """A memory store that records which customers were read (to prove bad ids never reach it)."""

    def __init__(self) -> None:
        from segstream.streams.state import MemoryStateStore

        self.inner = MemoryStateStore()
        self.viewed: list[str] = []

    async def view(self, ids: list[str], as_of_ms: int | None = None) -> dict[str, object]:
        self.viewed += list(ids)
        return await self.inner.view(ids, as_of_ms)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def _web_app(tmp_path: Path) -> tuple[object, _RecordingStore]:
    from segstream.streams.bundle_watch import ModelHolder
    from segstream.streams.monitoring import WorkerStats
    from segstream.streams.web import WebContext, build_app

    store = _RecordingStore()
    return build_app(WebContext(store, ModelHolder(tmp_path), WorkerStats())), store  # type: ignore[arg-type]


def test_worker_routes_are_read_only(tmp_path: Path) -> None:
    app, _ = _web_app(tmp_path)
    methods = {(route.method, route.resource.canonical) for route in app.router.routes()}  # type: ignore[attr-defined]
    assert methods, "no routes found"
    assert {m for m, _ in methods} <= {"GET", "HEAD"}, methods
    assert {r for _, r in methods} == {"/health", "/metrics", "/customers/{customer_id}"}


def test_worker_http_refuses_every_write_method(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    app, store = _web_app(tmp_path)

    async def go() -> dict[tuple[str, str], int]:
        statuses: dict[tuple[str, str], int] = {}
        async with TestClient(TestServer(app)) as client:  # type: ignore[arg-type]
            for path in ("/health", "/metrics", "/customers/C1", "/customers", "/admin", "/"):
                for method in ("POST", "PUT", "PATCH", "DELETE"):
                    async with client.request(method, path, data=b"{}") as response:
                        statuses[(method, path)] = response.status
            async with client.get("/customers/C1") as response:
                statuses[("GET", "/customers/C1")] = response.status
            for bad in ("a%20b", "a%0Ab", "%00", "x" * 200):
                async with client.get(f"/customers/{bad}") as response:
                    statuses[("GET", bad)] = response.status
        return statuses

    statuses = asyncio.run(go())
    writes = {k: v for k, v in statuses.items() if k[0] != "GET"}
    assert all(v in (404, 405) for v in writes.values()), writes
    assert statuses[("GET", "/customers/C1")] == 404  # unknown customer, read normally
    assert all(statuses[("GET", bad)] == 400 for bad in ("a%20b", "a%0Ab", "%00", "x" * 200)), statuses
    assert store.viewed == ["C1"], "an invalid id reached the store"


# ----------------------------------------------------------------------------------------- dashboard

_REDIS_WRITES = {
    "set", "setex", "setnx", "mset", "hset", "hsetnx", "hmset", "hdel", "hincrby", "incr", "incrby", "decr",
    "delete", "unlink", "expire", "pexpire", "persist", "rename", "lpush", "rpush", "lpop", "rpop", "ltrim",
    "lrem", "sadd", "srem", "zadd", "zrem", "zincrby", "flushdb", "flushall", "eval", "evalsha",
    "register_script", "script_load", "publish", "xadd", "config_set", "execute_command",
}  # fmt: skip
_KAFKA_WRITERS = {"KafkaProducer", "AIOKafkaProducer", "KafkaAdminClient", "AIOKafkaAdminClient", "commit",
                  "create_topics", "delete_topics", "send"}  # fmt: skip


def _dashboard_calls() -> list[tuple[str, str, int]]:
    calls: list[tuple[str, str, int]] = []
    for path in sorted((REPO / "segstream" / "dashboard").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                # Method calls only (client.set(...)); a bare set(...) is the builtin.
                name = func.attr if isinstance(func, ast.Attribute) else f"builtin:{getattr(func, 'id', '')}"
                calls.append((name, str(path.relative_to(REPO)), node.lineno))
    return calls


def test_dashboard_code_calls_no_redis_write_and_no_kafka_writer() -> None:
    calls = _dashboard_calls()
    assert len(calls) > 50, "the scan found almost nothing; did the dashboard move?"
    # A read pipeline (pipe.hget ... pipe.execute) is fine: any write queued on it is caught by name here.
    bad = [c for c in calls if c[0].lower() in _REDIS_WRITES or c[0] in _KAFKA_WRITERS]
    bad += [c for c in calls if c[0] in {f"builtin:{w}" for w in _KAFKA_WRITERS}]
    assert not bad, f"write-capable calls in the dashboard: {bad}"


def test_dashboard_redis_wrapper_offers_reads_only() -> None:
    from segstream.dashboard.live_redis import ReadOnlyRedis

    public = {name for name in dir(ReadOnlyRedis) if not name.startswith("_")}
    reads = {"ping", "get", "get_many", "hgetall", "hgetall_many", "hget_many", "lrange", "scan", "close"}
    assert public <= reads, public


def test_the_topic_reader_joins_no_group_and_the_dashboard_reads_through_it() -> None:
    source = (REPO / "segstream" / "topic_reader.py").read_text()
    assert "group_id=None" in source and "enable_auto_commit=False" in source
    assert "allow_auto_create_topics=False" in source
    dashboard = (REPO / "segstream" / "dashboard" / "live_topics.py").read_text()
    assert "read_records" in dashboard and "KafkaConsumer" not in dashboard


# ------------------------------------------------------------------------------- poison messages (DoS)


@pytest.mark.parametrize("depth", [30_000, 2_000, 950, 100])
def test_a_deeply_nested_message_is_dead_lettered_not_fatal(depth: int) -> None:
    """A message nested deeper than Python's recursion limit (well under the 64 KiB size limit) raised
    RecursionError out of the batch, from the decoder or (for ~940..975 levels, which still decode) from the
    encoder of the scored output: the worker exited without committing, re-read the same message on restart
    and died again, forever (a poison pill). It must be dead-lettered like any bad message."""
    from segstream.streams.pipeline import BatchProcessor
    from segstream.streams.state import MemoryStateStore
    from tests.unit.streams.fakes import FakeProducer, event, holder, records

    producer = FakeProducer()
    nested = event("e0", "C0", 1.0)[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
    processor = BatchProcessor(MemoryStateStore(), producer, holder())
    result = asyncio.run(processor.process(records(nested, event("e1", "C1", 1.0))))
    assert result.dead_letters == 1 and result.scored == 1
    (letter,) = producer.values("dead-letters")
    assert "recursion" in letter["error"] or "nested deeper" in letter["error"]


def test_moderate_nesting_in_extra_fields_is_still_accepted() -> None:
    from segstream.models.events import MAX_NESTING
    from segstream.streams.pipeline import BatchProcessor
    from segstream.streams.state import MemoryStateStore
    from tests.unit.streams.fakes import FakeProducer, event, holder, records

    depth = MAX_NESTING - 1  # plus the event object itself: exactly the limit
    nested = event("e0", "C0", 1.0)[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
    producer = FakeProducer()
    result = asyncio.run(BatchProcessor(MemoryStateStore(), producer, holder()).process(records(nested)))
    assert result.scored == 1 and result.dead_letters == 0
