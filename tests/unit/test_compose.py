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


def test_redis_refuses_to_start_without_a_password_and_the_dashboard_listens_on_loopback():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in text
    compose = _compose()
    assert compose["x-segstream"]["environment"]["SEGSTREAM_REDIS_PASSWORD"].startswith(
        "${SEGSTREAM_REDIS_PASSWORD:?"
    )
    assert any(str(arg).startswith("${SEGSTREAM_REDIS_PASSWORD:?") for arg in compose["services"]["redis"]["command"])
    (port,) = compose["services"]["dashboard"]["ports"]
    assert port == "${SEGSTREAM_DASHBOARD_BIND:-127.0.0.1}:8501:8501"


def _cluster_compose() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!override", lambda loader, node: loader.construct_mapping(node))
    return yaml.load((ROOT / "docker-compose.cluster.yml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader


def test_the_cluster_variant_runs_three_masters_with_a_replica_each():
    from segstream.redis_clients import is_cluster_url

    services = _cluster_compose()["services"]
    nodes = [name for name in services if name.startswith("redis-") and name[6:].isdigit()]
    assert len(nodes) == 6
    for name in nodes:
        command = services[name]["command"]
        assert command[command.index("--cluster-enabled") + 1] == "yes" and "--appendonly" in command
    create = services["redis-cluster-init"]["command"][-1]
    assert "--cluster-replicas 1" in create and all(f"{n}:6379" in create for n in nodes)
    for service in ("worker", "dashboard"):
        assert is_cluster_url(services[service]["environment"]["SEGSTREAM_REDIS_URL"])
