"""``segstream doctor`` without services: closed ports and a missing models root fail fast and say how to fix
them, without a traceback or a password; a bad setting is exit 2; the bundle check on local bundles."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from segstream.cli.doctor import doctor
from segstream.doctor import check_bundle, check_model_root
from segstream.models.bundle import read_manifest
from segstream.models.serving import SERVING
from segstream.settings import ModelSettings
from tests.unit.streams.fakes import make_bundle

URL_PASSWORD = "url-pass-9f3c2a71"
ENV_PASSWORD = "env-pass-51d0e6b4"
CHECKS = ["broker", "redis", "topics", "model-root", "bundle"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the socket is


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("SEGSTREAM_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def dead_env(clean_env, tmp_path):
    clean_env.setenv("SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{_closed_port()}")
    clean_env.setenv("SEGSTREAM_REDIS_URL", f"redis://app:{URL_PASSWORD}@127.0.0.1:{_closed_port()}/0")
    clean_env.setenv("SEGSTREAM_MODEL_ROOT", str(tmp_path / "no-such-models"))
    return tmp_path / "no-such-models"


def _invoke(*args: str):
    started = time.monotonic()
    result = CliRunner().invoke(doctor, list(args))
    return result, time.monotonic() - started


def test_dead_services_fail_fast_with_fix_hints(dead_env):
    result, seconds = _invoke()
    assert result.exit_code == 1, result.output
    assert seconds < 15
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert len(lines) == len(CHECKS)
    for line, name in zip(lines, CHECKS, strict=True):
        assert line.startswith(f"FAIL {name}"), line
        assert " \u2014 " in line, line  # detail — fix
    by_name = dict(zip(CHECKS, lines, strict=True))
    assert "connection refused" in by_name["broker"]
    assert "segstream stack up" in by_name["broker"] and "SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS" in by_name["broker"]
    assert "connection refused" in by_name["redis"] and "**********" in by_name["redis"]
    assert "segstream topics create" in by_name["topics"]
    assert str(dead_env) in by_name["model-root"] and "segstream promote" in by_name["model-root"]
    assert "segstream promote" in by_name["bundle"]
    assert URL_PASSWORD not in result.output


def test_json_lists_every_check_and_hides_passwords(dead_env, clean_env):
    clean_env.setenv("SEGSTREAM_REDIS_PASSWORD", ENV_PASSWORD)
    result, seconds = _invoke("--json", "--timeout", "1")
    assert result.exit_code == 1, result.output
    assert seconds < 15
    checks = json.loads(result.output)
    assert [c["name"] for c in checks] == CHECKS
    for check in checks:
        assert set(check) == {"name", "ok", "detail", "fix"}
        assert check["ok"] is False and check["detail"] and check["fix"]
    assert URL_PASSWORD not in result.output and ENV_PASSWORD not in result.output


def test_silent_services_time_out(clean_env, tmp_path):
    """A port that accepts but never answers costs about the timeout, not a hang."""
    with socket.socket() as kafka_sock, socket.socket() as redis_sock:
        for sock in (kafka_sock, redis_sock):
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
        clean_env.setenv("SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{kafka_sock.getsockname()[1]}")
        clean_env.setenv("SEGSTREAM_REDIS_URL", f"redis://127.0.0.1:{redis_sock.getsockname()[1]}/0")
        clean_env.setenv("SEGSTREAM_MODEL_ROOT", str(tmp_path))
        result, seconds = _invoke("--json", "--timeout", "1")
    assert result.exit_code == 1, result.output
    assert seconds < 10
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert not checks["broker"]["ok"] and "no Kafka broker answered" in checks["broker"]["detail"]
    assert not checks["redis"]["ok"] and "timeout" in checks["redis"]["detail"]
    assert not checks["model-root"]["ok"] and "no `current` pointer" in checks["model-root"]["detail"]


def test_bad_setting_is_exit_2(dead_env, clean_env):
    clean_env.setenv("SEGSTREAM_TOPIC_PARTITIONS", "0")
    result, _ = _invoke()
    assert result.exit_code == 2
    assert "SEGSTREAM_TOPIC_PARTITIONS" in result.output
    assert "Traceback" not in result.output


def test_bad_redis_scheme_is_named(dead_env, clean_env):
    clean_env.setenv("SEGSTREAM_REDIS_URL", f"http://app:{URL_PASSWORD}@127.0.0.1:1/0")
    result, _ = _invoke("--json", "--timeout", "1")
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert not checks["redis"]["ok"] and "SEGSTREAM_REDIS_URL" in checks["redis"]["fix"]
    assert URL_PASSWORD not in result.output


def test_bundle_check_verifies_like_the_worker(tmp_path):
    root = tmp_path / "models"
    path = make_bundle(root)
    models = ModelSettings(root=root)
    assert check_model_root(models).ok
    good = check_bundle(models)
    assert good.ok, good
    version = read_manifest(path).version
    assert version in good.detail

    signed_required = check_bundle(ModelSettings(root=root, require_signature=True))
    assert not signed_required.ok and "SEGSTREAM_MODEL_SIGNING_KEY" in signed_required.fix

    artifact = Path(path) / read_manifest(path).artifacts[SERVING].file
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    bad = check_bundle(models)
    assert not bad.ok and version in bad.detail and "sha256" in bad.detail
    assert "segstream promote" in bad.fix


def test_bundle_check_uses_the_signing_key(tmp_path):
    from segstream.models.bundle import promote, write_bundle_in_root
    from segstream.models.features import FEATURE_SPEC
    from tests.unit.streams.fakes import serving

    root = tmp_path / "models"
    key = "doctor-signing-key-0a1b"
    path = write_bundle_in_root(
        root, {SERVING: serving()}, feature_spec=FEATURE_SPEC.to_dict(), data_fingerprint={}, metrics={},
        signing_key=key.encode(),
    )  # fmt: skip
    promote(path, root, signing_key=key.encode())
    good = check_bundle(ModelSettings(root=root, signing_key=key, require_signature=True))
    assert good.ok and "signature checked" in good.detail, good
    wrong = check_bundle(ModelSettings(root=root, signing_key="another-key"))
    assert not wrong.ok and "signature" in wrong.detail and "SEGSTREAM_MODEL_SIGNING_KEY" in wrong.fix
    assert key not in wrong.detail + wrong.fix and "another-key" not in wrong.detail + wrong.fix
