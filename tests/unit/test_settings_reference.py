"""docs/settings.md is what the settings classes say: current, complete, every name real, no secret printed."""

from __future__ import annotations

import os

import pytest
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from segstream import settings as settings_module
from segstream.settings_reference import (
    DOC_PATH,
    accepted_env_names,
    env_names,
    field_descriptions,
    is_secret,
    main,
    render_reference,
    render_section,
    sections,
)

PROBE = "__probe__"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("SEGSTREAM_"):
            monkeypatch.delenv(name)


def _settings_classes() -> list[type[BaseSettings]]:
    return [
        value
        for value in vars(settings_module).values()
        if isinstance(value, type) and issubclass(value, BaseSettings) and value.__module__ == settings_module.__name__
    ]


def _fields():
    return [(cls, name) for cls in _settings_classes() for name in cls.model_fields]


def test_docs_settings_md_is_current():
    current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
    assert current == render_reference(), (
        "docs/settings.md is out of date: run `python -m segstream.settings_reference` and commit the result"
    )


def test_render_is_deterministic():
    assert render_reference() == render_reference()


def test_every_settings_class_is_a_documented_section():
    documented = {cls for _, cls in sections()}
    assert set(_settings_classes()) == documented
    text = render_reference()
    for cls in documented:
        assert f"## {cls.__name__}\n" in text


@pytest.mark.parametrize(("cls", "field_name"), _fields(), ids=lambda v: getattr(v, "__name__", v))
def test_every_field_appears_by_its_env_name(cls, field_name):
    text = render_reference()
    names = env_names(cls, field_name)
    assert names, f"{cls.__name__}.{field_name} has no environment variable to document"
    field = cls.model_fields[field_name]
    if field.validation_alias is None:
        assert names == [f"{cls.model_config['env_prefix']}{field_name}".upper()]
    for name in names:
        assert f"`{name}`" in text, f"{name} ({cls.__name__}.{field_name}) missing from docs/settings.md"


@pytest.mark.parametrize(("cls", "field_name"), _fields(), ids=lambda v: getattr(v, "__name__", v))
def test_every_documented_name_is_read_by_pydantic_settings(cls, field_name, monkeypatch):
    """Set each documented variable to a probe: the field either takes it or refuses it, so the name is real."""
    own_locs = {field_name, *accepted_env_names(cls, field_name)}
    for name in env_names(cls, field_name):
        monkeypatch.setenv(name, PROBE)
        try:
            value = getattr(cls(), field_name)
        except ValidationError as exc:
            locs = {str(error["loc"][0]).upper() for error in exc.errors()}
            assert locs & {loc.upper() for loc in own_locs}, f"{name} did not reach {cls.__name__}.{field_name}"
        else:
            shown = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            assert shown == PROBE, f"{name} did not set {cls.__name__}.{field_name}"
        monkeypatch.delenv(name)


def test_web_port_aliases_are_listed_in_precedence_order():
    assert env_names(settings_module.WorkerSettings, "web_port") == ["SEGSTREAM_WEB_PORT", "SEGSTREAM_WORKER_WEB_PORT"]


def test_secret_defaults_are_never_printed():
    text = render_reference()
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| `SEGSTREAM_")}
    secrets = [(cls, name) for cls, name in _fields() if is_secret(cls.model_fields[name])]
    assert secrets, "expected the settings to have SecretStr fields"
    for cls, name in secrets:
        default_cell = rows[f"`{name}`"].split(" | ")[3]
        assert default_cell in {"(secret)", "unset"}, f"{cls.__name__}.{name} prints its default"


class _Sample(BaseSettings):
    """A sample section for the renderer.

    Second paragraph, left out of the reference.
    """

    model_config = SettingsConfigDict(env_prefix="SAMPLE_")

    # The comment block above a field
    # becomes its description.
    commented: int = Field(default=3, gt=0, le=10)
    # Ignored: the description wins.
    described: str = Field(default="x", description="From description=.")
    token: SecretStr = SecretStr("hunter2-default-token")
    dsn: str = "redis://user:hunter2-url-password@db:6379/0"
    bare: float | None = None


def test_render_section_of_a_sample_class():
    text = render_section(_Sample)
    assert "## _Sample\n\nA sample section for the renderer.\n" in text
    assert "Second paragraph" not in text
    assert (
        "| `SAMPLE_COMMENTED` | `commented` | int | `3` | > 0, <= 10 | The comment block above a field becomes" in text
    )
    assert "From description=." in text and "Ignored" not in text
    assert "| `SAMPLE_BARE` | `bare` | float, optional | unset |" in text
    assert "| `SAMPLE_TOKEN` | `token` | secret | (secret) |" in text
    assert "hunter2" not in text
    assert "redis://user:**********@db:6379/0" in text
    assert field_descriptions(_Sample) == {
        "commented": "The comment block above a field becomes its description.",
        "described": "Ignored: the description wins.",
    }


def test_check_mode_reports_a_stale_file_in_one_line(tmp_path, capsys):
    target = tmp_path / "settings.md"
    assert main(["--check", "--output", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python -m segstream.settings_reference" in err
    assert main(["--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render_reference()
    capsys.readouterr()
    assert main(["--check", "--output", str(target)]) == 0
    target.write_text("stale\n", encoding="utf-8")
    assert main(["--check", "--output", str(target)]) == 1
