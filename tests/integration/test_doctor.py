"""``segstream doctor`` against the session broker and Redis: all green with topics and a promoted bundle;
a corrupted artifact, a missing topic and a password-protected Redis each fail their own check only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from segstream.cli.doctor import doctor
from segstream.embedded.binaries import find_redis_server
from segstream.embedded.probes import port_accepts
from segstream.models.bundle import read_manifest
from segstream.models.serving import SERVING
from segstream.settings import TopicSettings
from segstream.streams.topics import ensure_topics, wait_for_topics
from tests.integration.conftest import StackHandle, free_port
from tests.unit.streams.fakes import make_bundle

CHECKS = ["broker", "redis", "topics", "model-root", "bundle"]
PASSWORD = "doctor-redis-secret-7c41e9"


def _topic_env(tag: str) -> dict[str, str]:
    fields = ("transactions", "scored", "segment_changes", "sales_forecasts", "dead_letters", "monitoring")
    return {f"SEGSTREAM_TOPIC_{f.upper()}": f"doctor-{f.replace('_', '-')}-{tag}" for f in fields}


@pytest.fixture
def doctor_env(embedded_stack: StackHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Env pointing at the session stack, with this test's own topics (created) and models root (promoted)."""
    env = {
        "SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS": embedded_stack.kafka_bootstrap,
        "SEGSTREAM_REDIS_URL": embedded_stack.redis_url,
        "SEGSTREAM_MODEL_ROOT": str(tmp_path / "models"),
        **_topic_env(uuid.uuid4().hex[:8]),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    names = TopicSettings().names()
    ensure_topics(embedded_stack.settings.kafka, names, partitions=2)
    wait_for_topics(embedded_stack.settings.kafka, names, timeout=15)
    make_bundle(tmp_path / "models")
    return env


def _run(*args: str) -> tuple[int, list[dict[str, object]]]:
    result = CliRunner().invoke(doctor, ["--json", *args])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.output)


def test_all_ok_exits_0(doctor_env: dict[str, str]) -> None:
    # A real process, so the exit code is the one a shell sees.
    proc = subprocess.run(
        [sys.executable, "-c", "from segstream.cli.doctor import doctor; doctor()"],
        env={**os.environ, **doctor_env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", name] for name in CHECKS], proc.stdout
    broker = lines[0]
    assert doctor_env["SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS"] in broker and "topics" in broker
    version = read_manifest(Path(doctor_env["SEGSTREAM_MODEL_ROOT"]) / "current").version
    assert version in lines[-1]


def test_corrupted_bundle_fails_the_bundle_check(doctor_env: dict[str, str]) -> None:
    code, checks = _run()
    assert code == 0 and all(c["ok"] for c in checks), checks

    bundle = Path(doctor_env["SEGSTREAM_MODEL_ROOT"]) / "current"
    manifest = read_manifest(bundle)
    artifact = bundle / manifest.artifacts[SERVING].file
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))

    code, checks = _run()
    assert code == 1
    by_name = {c["name"]: c for c in checks}
    assert [c["name"] for c in checks] == CHECKS
    assert not by_name["bundle"]["ok"]
    assert manifest.version in by_name["bundle"]["detail"] and "sha256" in by_name["bundle"]["detail"]
    assert by_name["bundle"]["fix"]
    assert all(by_name[name]["ok"] for name in ("broker", "redis", "topics", "model-root")), checks


def test_missing_topic_is_named(doctor_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"doctor-never-created-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SEGSTREAM_TOPIC_MONITORING", missing)
    code, checks = _run()
    assert code == 1
    topics = next(c for c in checks if c["name"] == "topics")
    assert not topics["ok"] and missing in topics["detail"] and "segstream topics create" in topics["fix"]
    assert [c["name"] for c in checks if not c["ok"]] == ["topics"]


@pytest.fixture(scope="module")
def auth_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://`` URL (no password in it) of a private Redis that requires ``PASSWORD``."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("doctor-auth-redis")
    argv = [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
            "--save", "", "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not port_accepts("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_auth_failure_is_told_apart(
    doctor_env: dict[str, str], auth_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEGSTREAM_REDIS_PASSWORD", raising=False)
    wrong = "not-the-password-3e8d"
    monkeypatch.setenv("SEGSTREAM_REDIS_URL", auth_redis.replace("redis://", f"redis://:{wrong}@"))
    result = CliRunner().invoke(doctor, [])
    assert result.exit_code == 1
    redis_line = next(line for line in result.output.splitlines() if line.split()[1] == "redis")
    assert redis_line.startswith("FAIL") and "authentication failed" in redis_line, redis_line
    assert "SEGSTREAM_REDIS_PASSWORD" in redis_line and wrong not in result.output

    monkeypatch.setenv("SEGSTREAM_REDIS_URL", auth_redis)
    code, checks = _run()
    redis_check = next(c for c in checks if c["name"] == "redis")
    assert code == 1 and not redis_check["ok"] and "authentication failed" in redis_check["detail"]

    monkeypatch.setenv("SEGSTREAM_REDIS_PASSWORD", PASSWORD)
    code, checks = _run()
    assert code == 0 and all(c["ok"] for c in checks), checks
    assert PASSWORD not in json.dumps(checks)
