"""Security against real servers: a password-protected Redis, secrets in the worker's environment, and
model bundles that were tampered with, left unsigned or signed with the wrong key while the worker runs.

A private ``redis-server --requirepass`` is started for this module; the broker is the session one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from segstream.embedded.binaries import find_redis_server
from segstream.embedded.probes import port_accepts
from segstream.models.bundle_manifest import MANIFEST_NAME, SIGNATURE_NAME, signature_text
from segstream.models.bundle_verify import read_manifest
from segstream.models.events import parse_event
from segstream.settings import RedisSettings
from segstream.streams.state import open_store
from tests.integration.conftest import StackHandle
from tests.integration.faults_support import (
    Dataset,
    WorkerConfig,
    WorkerProcess,
    build_dataset,
    free_port,
    make_records,
    produce,
    read_topic,
    redis_sync,
    wait_drained,
    wait_until,
)

PASSWORD = "redis-secret-6b1f0e2a"
SIGNING_KEY = "bundle-key-d41d8cd9"
SASL_PASSWORD = "sasl-secret-0c7e11aa"


@pytest.fixture(scope="module")
def auth_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://`` URL (without the password) of a Redis server that requires ``PASSWORD``."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("auth-redis")
    argv = [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
            "--save", "", "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 15
        while not port_accepts("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return build_dataset(tmp_path_factory.getbasetemp() / "faults-dataset")


def _event() -> object:
    raw = b'{"event_id":"sec-1","customer_id":"C1","timestamp":1735000000000,"amount":12.5}'
    return parse_event(raw)


def _apply_once(url: str, **settings: object) -> int:
    async def go() -> int:
        redis = RedisSettings(url=url, key_prefix="sec", **settings)  # type: ignore[arg-type]
        store = open_store(redis.url, prefix=redis.key_prefix, **redis.client_kwargs())
        try:
            result = await store.apply([_event()])  # type: ignore[list-item]
            return result.watermark_ms
        finally:
            await store.close()

    return asyncio.run(go())


def test_state_store_uses_the_password_and_fails_clearly_without_it(auth_redis: str) -> None:
    import redis.exceptions

    assert _apply_once(auth_redis, password=PASSWORD) == 1_735_000_000_000
    assert _apply_once(auth_redis.replace("redis://", f"redis://:{PASSWORD}@")) == 1_735_000_000_000
    with pytest.raises(redis.exceptions.AuthenticationError, match="(?i)auth"):
        _apply_once(auth_redis)
    with pytest.raises(redis.exceptions.AuthenticationError, match="(?i)invalid|wrong"):
        _apply_once(auth_redis, password="not-the-password")


def test_customer_command_says_authentication_failed(auth_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from segstream.cli.main import cli

    for name in [n for n in os.environ if n.startswith("SEGSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SEGSTREAM_REDIS_URL", auth_redis)
    monkeypatch.setenv("SEGSTREAM_REDIS_KEY_PREFIX", "sec")
    result = CliRunner().invoke(cli, ["customer", "C1"])
    assert result.exit_code == 2 and "Authentication required" in result.output, result.output
    monkeypatch.setenv("SEGSTREAM_REDIS_PASSWORD", PASSWORD)
    result = CliRunner().invoke(cli, ["customer", "NOBODY"])
    assert result.exit_code == 2 and "not in the live state" in result.output, result.output
    assert PASSWORD not in result.output


def _copy_bundle(source: Path, root: Path, name: str, version: str, key: str | None) -> Path:
    """A copy of ``source`` under ``root`` with a new version id, signed with ``key`` (or unsigned)."""
    target = root / name
    shutil.copytree(source, target)
    (target / SIGNATURE_NAME).unlink(missing_ok=True)
    raw = dataclasses.replace(read_manifest(target), version=version).to_bytes()
    (target / MANIFEST_NAME).write_bytes(raw)
    if key is not None:
        (target / SIGNATURE_NAME).write_text(signature_text(raw, key.encode()))
    return target


def _point_current(root: Path, bundle: Path) -> None:
    """Move ``current`` to ``bundle`` without ``promote`` (which would refuse it): an attacker's or a broken
    deployment's pointer change."""
    tmp = root / ".current.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(bundle.name, tmp)
    os.replace(tmp, root / "current")


def _model_version(worker: WorkerProcess) -> str | None:
    status, body = worker.http("/health")
    return json.loads(body).get("model_version") if status in (200, 503) else None


def test_worker_with_password_signed_bundles_and_hot_reload_refusals(
    auth_redis: str, embedded_stack: StackHandle, dataset: Dataset, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    good = _copy_bundle(dataset.bundle, root, "a", "20990101T000000Z-0000000a", SIGNING_KEY)
    _point_current(root, good)
    secrets = {"SEGSTREAM_MODEL_SIGNING_KEY": SIGNING_KEY, "SEGSTREAM_KAFKA_SASL_PASSWORD": SASL_PASSWORD}
    config = WorkerConfig(embedded_stack.kafka_bootstrap, auth_redis, root, tmp_path, partitions=2,
                          extra_env={**secrets, "SEGSTREAM_REDIS_PASSWORD": "wrong-password"})  # fmt: skip
    config.create_topics()
    events = dataset.events.head(600)
    ids = list(zip(events["event_id"].astype(str), events["customer_id"].astype(str), strict=True))
    produce(make_records(events), config.kafka, config.topics["transactions"])

    # 1. Wrong password: the worker says so, stays up, processes and commits nothing.
    wrong = WorkerProcess(config, name="wrong-password")
    try:
        wrong.start()
        wrong.wait_ready()
        wait_until(lambda: "AuthenticationError" in wrong.log(), 30, what="an authentication error in the log")
        status, body = wrong.http("/health")
        assert status == 503 and "Authentication" in body, body
        assert wrong.alive()
    finally:
        wrong.stop()

    # 2. Right password (same consumer group), debug logging: every event is processed, which also proves the
    #    failed worker committed no offset; no secret appears in the log.
    config.extra_env["SEGSTREAM_REDIS_PASSWORD"] = PASSWORD
    worker = WorkerProcess(config, name="worker")
    try:
        worker.start(loglevel="debug")
        worker.wait_ready()
        drained = wait_drained(redis_sync(config.redis), config.prefix, ids, timeout=60)
        assert _model_version(worker) == "20990101T000000Z-0000000a"

        # 3. Hot reload refusals: each bad bundle is refused and the signed one keeps scoring.
        tampered = _copy_bundle(good, root, "tampered", "20990102T000000Z-0000000b", SIGNING_KEY)
        blob = bytearray((tampered / "serving.joblib").read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        (tampered / "serving.joblib").write_bytes(bytes(blob))
        unsigned = _copy_bundle(good, root, "unsigned", "20990103T000000Z-0000000c", None)
        wrong_key = _copy_bundle(good, root, "wrong-key", "20990104T000000Z-0000000d", "some-other-key")
        expected = {tampered: "sha256 does not match", unsigned: "not signed", wrong_key: "signature does not match"}
        for bundle, reason in expected.items():
            _point_current(root, bundle)
            wait_until(lambda b=bundle: f"{b}" in worker.log() and "refused model bundle" in worker.log(), 20,
                       what=f"{bundle.name} to be refused")  # fmt: skip
            line = next(x for x in worker.log().splitlines() if "refused model bundle" in x and str(bundle) in x)
            assert reason in line and "keeping the active model (20990101T000000Z-0000000a)" in line, line
            assert _model_version(worker) == "20990101T000000Z-0000000a"
        # Scoring goes on with the kept model.
        more = dataset.events.iloc[600:700]
        produce(make_records(more), config.kafka, config.topics["transactions"])
        more_keys = list(zip(more["event_id"].astype(str), more["customer_id"].astype(str), strict=True))
        wait_drained(redis_sync(config.redis), config.prefix, more_keys, timeout=60)
        versions = {json.loads(v)["model_version"] for _, v in read_topic(config.kafka, config.topics["scored"])}
        assert versions == {"20990101T000000Z-0000000a"}
        # Positive control: a properly signed new bundle is swapped in.
        signed = _copy_bundle(good, root, "signed", "20990105T000000Z-0000000e", SIGNING_KEY)
        _point_current(root, signed)
        wait_until(lambda: _model_version(worker) == "20990105T000000Z-0000000e", 20, what="the signed bundle")
        assert worker.alive() and worker.starts == 1
    finally:
        worker.stop()
    logs = wrong.log() + worker.log()
    assert "DEBUG" in logs  # the debug log really was captured
    for secret in (PASSWORD, SIGNING_KEY, SASL_PASSWORD, "wrong-password"):
        assert secret not in logs, f"{secret!r} appears in the worker log"
    print(f"SECURITY-RESULT {json.dumps({'events': len(ids), 'drained_s': round(drained, 1), 'refused': 3})}")
