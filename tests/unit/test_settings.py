"""Settings: env parsing per section, secrets never shown, client kwargs shaped for each library."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from segstream.settings import (
    KafkaSettings,
    RedisSettings,
    Settings,
    StackSettings,
    TopicSettings,
    WorkerSettings,
    redact_url,
    settings_error_message,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("SEGSTREAM_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_embedded_stack():
    s = Settings.load()
    assert s.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert s.redis.url == "redis://127.0.0.1:16379/0"
    assert s.redis.key_prefix == "segstream"
    assert s.stack.kafka_port == 19092 and s.stack.redis_port == 16379
    assert s.stack.state_dir == Path(".segstream/stack")
    assert s.models.root == Path(".segstream/models")
    assert s.worker.web_port == 6066 and s.worker.hysteresis_evaluations == 1
    assert s.topics.names() == [
        "transactions",
        "transactions.scored",
        "segment-changes",
        "sales-forecasts",
        "dead-letters",
        "monitoring",
        "campaign-triggers",
        "customer-profiles",
    ]
    assert s.topics.partitions == 4 and s.topics.replication_factor == 1


def test_env_parsing_per_section(monkeypatch):
    monkeypatch.setenv("SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9093")
    monkeypatch.setenv("SEGSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SEGSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SEGSTREAM_KAFKA_SASL_USERNAME", "alice")
    monkeypatch.setenv("SEGSTREAM_KAFKA_SASL_PASSWORD", "kafka-pw")
    monkeypatch.setenv("SEGSTREAM_REDIS_URL", "redis://r:6379/2")
    monkeypatch.setenv("SEGSTREAM_REDIS_KEY_PREFIX", "seg2")
    monkeypatch.setenv("SEGSTREAM_TOPIC_TRANSACTIONS", "tx")
    monkeypatch.setenv("SEGSTREAM_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("SEGSTREAM_MODEL_ROOT", "/srv/models")
    monkeypatch.setenv("SEGSTREAM_WEB_PORT", "7001")
    monkeypatch.setenv("SEGSTREAM_WORKER_BATCH_SIZE", "1000")
    monkeypatch.setenv("SEGSTREAM_STACK_KAFKA_PORT", "29092")
    s = Settings.load()
    assert s.kafka.bootstrap_list() == ["k1:9092", "k2:9093"]
    assert s.kafka.sasl_password is not None and s.kafka.sasl_password.get_secret_value() == "kafka-pw"
    assert s.redis.url == "redis://r:6379/2" and s.redis.key_prefix == "seg2"
    assert s.topics.transactions == "tx" and s.topics.partitions == 12
    assert s.models.root == Path("/srv/models")
    assert s.worker.web_port == 7001 and s.worker.batch_size == 1000
    assert s.stack.kafka_port == 29092


def test_invalid_values_are_rejected(monkeypatch):
    monkeypatch.setenv("SEGSTREAM_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ValidationError, match="security_protocol"):
        KafkaSettings()
    with pytest.raises(ValidationError, match="partitions"):
        TopicSettings(partitions=0)
    with pytest.raises(TypeError, match="nope"):
        Settings.load(nope=1)


def test_worker_web_port_accepts_field_name_and_worker_prefixed_env(monkeypatch):
    assert WorkerSettings(web_port=9000).web_port == 9000
    monkeypatch.setenv("SEGSTREAM_WORKER_WEB_PORT", "9100")
    assert WorkerSettings().web_port == 9100


def test_overrides_replace_whole_sections():
    s = Settings.load(kafka=KafkaSettings(bootstrap_servers="x:1"), stack=StackSettings(kafka_port=1))
    assert s.kafka.bootstrap_servers == "x:1" and s.stack.kafka_port == 1


def test_secrets_never_appear_in_str_repr_json_or_logs(monkeypatch, caplog):
    monkeypatch.setenv("SEGSTREAM_KAFKA_SASL_PASSWORD", "kafka-secret-1")
    monkeypatch.setenv("SEGSTREAM_REDIS_PASSWORD", "redis-secret-2")
    monkeypatch.setenv("SEGSTREAM_REDIS_URL", "redis://user:url-secret-3@r:6379/0")
    monkeypatch.setenv("SEGSTREAM_MODEL_SIGNING_KEY", "signing-secret-4")
    s = Settings.load()
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings %s %r", s, s)
    renderings = [str(s), repr(s), s.model_dump_json(), caplog.text, repr(s.redis), str(s.kafka)]
    for text in renderings:
        for secret in ("kafka-secret-1", "redis-secret-2", "url-secret-3", "signing-secret-4"):
            assert secret not in text
    assert "**********" in s.model_dump_json()
    # The values are still usable where they are needed.
    assert s.redis.client_kwargs()["password"] == "redis-secret-2"
    assert s.redis.url == "redis://user:url-secret-3@r:6379/0"


@given(password=st.text(alphabet=st.characters(categories=["L", "N"]), min_size=4, max_size=20))
def test_redact_url_hides_any_password(password):
    url = f"redis://u:{password}@host:6379/1"
    redacted = redact_url(url)
    # what stands where the password stood (the scheme and host may hold it by chance, as "redi" does)
    assert password not in redacted.removeprefix("redis://u:").removesuffix("@host:6379/1")
    assert redacted == "redis://u:**********@host:6379/1"


def test_redact_url_leaves_urls_without_password_alone():
    assert redact_url("redis://127.0.0.1:16379/0") == "redis://127.0.0.1:16379/0"


def test_kafka_python_and_aiokafka_kwargs_plaintext_and_sasl_ssl(tmp_path):
    plain = KafkaSettings()
    kw = plain.kafka_python_kwargs()
    assert kw["bootstrap_servers"] == ["127.0.0.1:19092"] and kw["security_protocol"] == "PLAINTEXT"
    assert "sasl_plain_password" not in kw and "ssl_cafile" not in kw
    assert plain.ssl_context() is None

    secure = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="bob",
        sasl_password="pw",
    )
    kw = secure.kafka_python_kwargs()
    assert kw["sasl_mechanism"] == "SCRAM-SHA-256" and kw["sasl_plain_username"] == "bob"
    assert kw["sasl_plain_password"] == "pw" and "ssl_cafile" in kw
    akw = secure.aiokafka_kwargs()
    assert akw["ssl_context"] is not None and akw["sasl_plain_password"] == "pw"


def test_consumer_group_kwargs_carry_the_tansu_tuning():
    s = KafkaSettings()
    kp = s.consumer_group_kwargs("kafka-python")
    assert kp == {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 300_000}
    ak = s.consumer_group_kwargs("aiokafka")
    assert ak["rebalance_timeout_ms"] == 5000 and ak["max_poll_interval_ms"] == 300_000
    # Heartbeats must fit at least three times into the session timeout (Kafka's rule of thumb).
    assert kp["heartbeat_interval_ms"] * 3 <= kp["session_timeout_ms"]


def test_faust_kwargs():
    s = KafkaSettings(bootstrap_servers="a:1,b:2")
    kw = s.faust_app_kwargs()
    assert kw["broker"] == "kafka://a:1;b:2"
    assert kw["broker_session_timeout"] == 6.0 and kw["broker_rebalance_timeout"] == 5.0
    assert kw["broker_max_poll_interval"] == 300.0
    assert "broker_credentials" not in kw
    sasl = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    creds = sasl.faust_broker_credentials()
    assert creds.username == "u" and creds.password == "p"


def test_redis_client_kwargs_tls_only_for_rediss():
    plain = RedisSettings(ssl_cert_reqs="required", ssl_ca_certs="/ca.pem")
    assert "ssl_cert_reqs" not in plain.client_kwargs() and "password" not in plain.client_kwargs()
    tls = RedisSettings(url="rediss://r:6380/0", ssl_cert_reqs="required", ssl_ca_certs="/ca.pem", password="x")
    kw = tls.client_kwargs()
    assert kw["ssl_cert_reqs"] == "required" and kw["ssl_ca_certs"] == "/ca.pem" and kw["password"] == "x"


def test_a_refused_setting_is_named_by_its_environment_variable_without_its_value(monkeypatch):
    monkeypatch.setenv("SEGSTREAM_REDIS_PASSWORD", "hunter2")
    monkeypatch.setenv("SEGSTREAM_WORKER_BATCH_SIZE", "0")
    with pytest.raises(ValidationError) as refused:
        WorkerSettings()
    message = settings_error_message(refused.value)
    assert message == "invalid setting: SEGSTREAM_WORKER_BATCH_SIZE: Input should be greater than or equal to 1"
    monkeypatch.setenv("SEGSTREAM_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ValidationError) as refused:
        KafkaSettings()
    assert "SEGSTREAM_KAFKA_SECURITY_PROTOCOL" in settings_error_message(refused.value)
    assert "TLS" not in settings_error_message(refused.value).split(":", 2)[1]  # the name, not the value
    # Anything else is not a settings error: the CLI lets it through as it was.
    assert settings_error_message(ValueError("x")) is None
    with pytest.raises(ValidationError) as other:
        Settings(kafka=1)  # not a section read from the environment
    assert settings_error_message(other.value) is None


def test_the_workers_future_skew_default_is_the_one_models_and_cleaning_use():
    """settings.py keeps its own literal (importing models would load numpy for every settings read)."""
    from segstream.models.events import DEFAULT_MAX_FUTURE_SKEW_S

    assert WorkerSettings().max_future_skew_s == DEFAULT_MAX_FUTURE_SKEW_S


def test_a_setting_read_through_an_alias_is_named_once(monkeypatch):
    monkeypatch.setenv("SEGSTREAM_WEB_PORT", "not-a-port")
    with pytest.raises(ValidationError) as refused:
        WorkerSettings()
    message = settings_error_message(refused.value)
    assert message is not None and message.startswith("invalid setting: SEGSTREAM_WEB_PORT: "), message


def test_a_bare_web_port_variable_of_another_tool_is_ignored(monkeypatch):
    monkeypatch.setenv("WEB_PORT", "1234")
    assert WorkerSettings().web_port == 6066
