"""``segstream config``: effective values with their source, secrets and URL passwords never shown, clean errors."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from segstream.cli import config as config_module
from segstream.cli.config import config

URL_PASSWORD = "hunter2-url-password"
SECRETS = {
    "SEGSTREAM_REDIS_URL": f"redis://worker:{URL_PASSWORD}@127.0.0.1:6379/0",
    "SEGSTREAM_REDIS_PASSWORD": "redis-password-s3cret",
    "SEGSTREAM_KAFKA_SASL_PASSWORD": "sasl-password-s3cret",
    "SEGSTREAM_MODEL_SIGNING_KEY": "signing-key-s3cret",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("SEGSTREAM_"):
            monkeypatch.delenv(name)


def _run(args, env):
    return CliRunner().invoke(config, args, env=env)


def _lines(output: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in output.splitlines()}


def test_exposes_the_command():
    assert config_module.COMMANDS == [config]
    result = _run(["--help"], {})
    assert result.exit_code == 0 and "secrets redacted" in result.output


def test_an_env_var_shows_its_value_and_source():
    result = _run([], {"SEGSTREAM_WORKER_BATCH_SIZE": "250", "SEGSTREAM_TOPIC_TRANSACTIONS": "tx-in"})
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert lines["worker.batch_size"] == ["250", "SEGSTREAM_WORKER_BATCH_SIZE"]
    assert lines["topics.transactions"] == ["tx-in", "SEGSTREAM_TOPIC_TRANSACTIONS"]
    assert lines["worker.group_id"] == ["segstream-worker", "default"]
    assert lines["kafka.sasl_password"] == ["unset", "default"]


def test_json_shows_value_and_source():
    result = _run(["--json"], {"SEGSTREAM_WORKER_BATCH_SIZE": "250", "SEGSTREAM_WEB_PORT": "7001"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["worker"]["batch_size"] == {
        "value": 250,
        "source": "SEGSTREAM_WORKER_BATCH_SIZE",
        "env": ["SEGSTREAM_WORKER_BATCH_SIZE"],
    }
    assert data["worker"]["web_port"]["value"] == 7001
    assert data["worker"]["web_port"]["source"] == "SEGSTREAM_WEB_PORT"
    assert data["redis"]["url"] == {
        "value": "redis://127.0.0.1:16379/0",
        "source": "default",
        "env": ["SEGSTREAM_REDIS_URL"],
    }
    assert data["models"]["signing_key"]["value"] is None
    assert set(data) == {"kafka", "redis", "topics", "models", "worker", "stack", "events", "dashboard", "database"}


@pytest.mark.parametrize("args", [[], ["--json"]])
def test_secrets_and_url_passwords_never_appear(args):
    result = _run(args, SECRETS)
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and URL_PASSWORD not in result.output
    assert "redis://worker:**********@127.0.0.1:6379/0" in result.output
    assert result.output.count("**********") >= 4
    if args:
        data = json.loads(result.stdout)
        assert data["models"]["signing_key"] == {
            "value": "**********",
            "source": "SEGSTREAM_MODEL_SIGNING_KEY",
            "env": ["SEGSTREAM_MODEL_SIGNING_KEY"],
        }
    else:
        assert _lines(result.stdout)["redis.password"] == ["**********", "SEGSTREAM_REDIS_PASSWORD"]


def test_a_url_redact_url_cannot_parse_still_hides_its_password():
    result = _run([], {"SEGSTREAM_REDIS_URL": f"redis://:{URL_PASSWORD}@db:not-a-port/0"})
    assert result.exit_code == 0, result.output
    assert URL_PASSWORD not in result.output
    assert _lines(result.stdout)["redis.url"] == ["redis://:**********@db:not-a-port/0", "SEGSTREAM_REDIS_URL"]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SEGSTREAM_WORKER_BATCH_SIZE": "0"}, "SEGSTREAM_WORKER_BATCH_SIZE"),
        ({"SEGSTREAM_STACK_KAFKA_PORT": "not-a-port-xyz"}, "SEGSTREAM_STACK_KAFKA_PORT"),
        ({"SEGSTREAM_KAFKA_SECURITY_PROTOCOL": "bogus-xyz"}, "SEGSTREAM_KAFKA_SECURITY_PROTOCOL"),
    ],
)
@pytest.mark.parametrize("args", [[], ["--json"]])
def test_an_invalid_value_is_a_one_line_error_with_exit_code_2(env, variable, args):
    result = _run(args, env)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and lines[0].startswith("Error: invalid setting:")
    assert "Traceback" not in result.output and "xyz" not in result.output
