"""docker-compose.yml cannot run here (no Docker engine); check its shape and that its settings exist."""

from __future__ import annotations

from pathlib import Path

import yaml

from segstream.settings import KafkaSettings, ModelSettings, RedisSettings, TopicSettings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_are_production_shaped():
    services = _compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert "broker,controller" in str(services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"])
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["worker"]["command"] == ["worker"]
    assert services["trainer"]["command"][0] == "train"
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["dashboard"]["command"][0] == "dashboard"


def test_every_segstream_variable_is_a_real_setting():
    env = _compose()["x-segstream"]["environment"]
    known = {
        "SEGSTREAM_KAFKA_": KafkaSettings,
        "SEGSTREAM_REDIS_": RedisSettings,
        "SEGSTREAM_MODEL_": ModelSettings,
        "SEGSTREAM_TOPIC_": TopicSettings,
    }
    for name in env:
        prefix = next(p for p in known if name.startswith(p))
        field = name[len(prefix) :].lower()
        assert field in known[prefix].model_fields, name
