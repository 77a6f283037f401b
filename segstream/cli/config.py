"""``segstream config``: every setting's effective value and where it came from, secrets redacted.

The source of a value is the ``SEGSTREAM_*`` variable that set it, or ``default``. Secrets print as
``**********`` (``unset`` when absent) and a password in a URL as ``**********``, so the output is safe to
paste into an issue. ``docs/settings.md`` describes every setting.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any

import click

_MASK = "**********"
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/?#@:]*):[^/?#@]*@")


class _SettingsError(click.ClickException):
    """A SEGSTREAM_* value a settings section refused: one line on stderr, exit code 2 (as for usage errors)."""

    exit_code = 2


def _redact(text: str) -> str:
    from segstream.settings import redact_url

    if "://" not in text:
        return text
    try:
        return redact_url(text)
    except ValueError:  # e.g. a port that is not a number: still never print the password
        return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{_MASK}@", text)


def _plain(value: Any, secret: bool) -> Any:
    """The value as JSON-ready data: secrets masked, URL passwords redacted, None kept as None."""
    if value is None:
        return None
    if secret:
        return _MASK
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        value = value.value
    return _redact(str(value))


def _text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _source(names: list[str], environ: dict[str, str]) -> str:
    """The variable that set the field (pydantic-settings matches names case-insensitively), or ``default``."""
    present = {key.upper(): key for key in environ}
    for name in names:
        if name in present:
            return present[name]
    return "default"


def effective_settings(environ: dict[str, str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``section -> field -> {"value", "source", "env"}`` for ``Settings.load()``, secrets redacted.

    Raises the settings section's ``ValidationError`` when a variable is refused.
    """
    from segstream.settings import Settings
    from segstream.settings_reference import accepted_env_names, env_names, is_secret, sections

    environ = dict(os.environ if environ is None else environ)
    settings = Settings.load()
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for section_name, cls in sections():
        section = getattr(settings, section_name)
        fields: dict[str, dict[str, Any]] = {}
        for field_name, field in cls.model_fields.items():
            fields[field_name] = {
                "value": _plain(getattr(section, field_name), is_secret(field)),
                "source": _source(accepted_env_names(cls, field_name), environ),
                "env": env_names(cls, field_name),
            }
        result[section_name] = fields
    return result


def _echo_text(effective: dict[str, dict[str, dict[str, Any]]]) -> None:
    rows = [
        (f"{section}.{name}", _text(info["value"]), info["source"])
        for section, fields in effective.items()
        for name, info in fields.items()
    ]
    key_width = max(len(key) for key, _, _ in rows)
    value_width = min(max(len(value) for _, value, _ in rows), 48)
    for key, value, source in rows:
        click.echo(f"{key:<{key_width}}  {value:<{value_width}}  {source}".rstrip())


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print {section: {field: {value, source, env}}} as JSON.")
def config(as_json: bool) -> None:
    """Print the effective settings, secrets redacted.

    Each line is SECTION.FIELD, its value and its source: the SEGSTREAM_* variable that set it, or
    "default". Secrets show as ********** (or "unset"); a password in a URL is redacted too.
    docs/settings.md describes every setting.
    """
    from segstream.settings import settings_error_message

    try:
        effective = effective_settings()
    except Exception as exc:
        message = settings_error_message(exc)
        if message is None:
            raise
        raise _SettingsError(message) from None
    if as_json:
        click.echo(json.dumps(effective, indent=2))
    else:
        _echo_text(effective)


COMMANDS = [config]
