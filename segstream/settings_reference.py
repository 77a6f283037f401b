"""The settings reference (``docs/settings.md``), generated from the classes in :mod:`segstream.settings`.

Every ``SEGSTREAM_*`` variable, its type, default, bounds and meaning come from the code itself: the field's
``description`` when it has one, else the ``# ...`` comment block written directly above the field. Run
``python -m segstream.settings_reference`` after changing a setting; ``--check`` exits 1 when the file is stale
(the unit tests run the same comparison).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import re
import sys
import textwrap
import tokenize
import types
from collections.abc import Iterable
from datetime import date, datetime
from enum import Enum
from functools import cache
from pathlib import Path, PurePath
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, AliasPath, SecretBytes, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from segstream import settings as settings_module
from segstream.settings import Settings, redact_url

__all__ = [
    "DOC_PATH",
    "accepted_env_names",
    "env_names",
    "field_descriptions",
    "is_secret",
    "main",
    "render_reference",
    "render_section",
    "sections",
]

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
REGENERATE = "python -m segstream.settings_reference"

_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_RST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_SECRET_TYPES = (SecretStr, SecretBytes)


def sections() -> list[tuple[str, type[BaseSettings]]]:
    """``(name, class)`` of every section of :class:`~segstream.settings.Settings`, in declaration order."""
    found = []
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseSettings):
            found.append((name, section))
    return found


def _prefix(cls: type[BaseSettings]) -> str:
    return str(cls.model_config.get("env_prefix") or "")


def _alias_names(field: FieldInfo) -> list[str] | None:
    """The names a ``validation_alias`` gives the field (None when it has none); the env prefix does not apply."""
    alias = field.validation_alias
    if alias is None:
        return None
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    names: list[str] = []
    for choice in choices:
        first = choice.path[0] if isinstance(choice, AliasPath) else choice
        if isinstance(first, str):
            names.append(first)
    return names


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def accepted_env_names(cls: type[BaseSettings], field_name: str) -> list[str]:
    """Every (upper-cased) environment variable pydantic-settings reads for the field, first match wins."""
    field = cls.model_fields[field_name]
    aliases = _alias_names(field)
    if aliases is None:
        return [f"{_prefix(cls)}{field_name}".upper()]
    return _unique(name.upper() for name in aliases)


def env_names(cls: type[BaseSettings], field_name: str) -> list[str]:
    """The environment variables to document for the field: ``<PREFIX><FIELD>``, or its env-style aliases.

    An alias written in lower case (``web_port``) is there for keyword construction; it is left out.
    """
    aliases = _alias_names(cls.model_fields[field_name])
    if aliases is None:
        return accepted_env_names(cls, field_name)
    return _unique(name for name in aliases if _ENV_NAME.fullmatch(name))


def _walk_types(annotation: Any) -> Iterable[Any]:
    yield annotation
    for arg in get_args(annotation):
        yield from _walk_types(arg)


def is_secret(field: FieldInfo) -> bool:
    """True when the field's type is (or contains) SecretStr / SecretBytes."""
    return any(isinstance(t, type) and issubclass(t, _SECRET_TYPES) for t in _walk_types(field.annotation))


@cache
def field_descriptions(cls: type) -> dict[str, str]:
    """``field -> text`` of the ``#`` comment lines directly above each field assignment in the class source."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.line.lstrip().startswith("#"):
            comments[token.start[0]] = token.string.lstrip("#").strip()
    (class_def,) = ast.parse(source).body
    found: dict[str, str] = {}
    for node in getattr(class_def, "body", []):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines = []
            line = node.lineno - 1
            while line in comments:
                lines.append(comments[line])
                line -= 1
            if lines:
                found[node.target.id] = " ".join(reversed(lines)).strip()
    return found


def _markdown(text: str) -> str:
    """RST-flavoured docstring/comment text as one Markdown table-safe line."""
    text = _RST_ROLE.sub(r"`\1`", text).replace("``", "`")
    return " ".join(text.split()).replace("|", "\\|")


def _first_paragraph(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return _markdown(doc.split("\n\n")[0])


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        name = " or ".join(_type_name(arg) for arg in args)
        return f"{name}, optional" if len(args) < len(get_args(annotation)) else name
    if isinstance(annotation, type):
        if issubclass(annotation, _SECRET_TYPES):
            return "secret"
        if issubclass(annotation, PurePath):
            return "path"
        if issubclass(annotation, datetime):
            return "datetime (ISO 8601 or Unix time)"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return None if field.default is PydanticUndefined else field.default


def _format_default(field: FieldInfo) -> str:
    value = _default(field)
    if value is None:
        return "unset"
    if is_secret(field):
        return "(secret)"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, PurePath):
        text = value.as_posix()
    elif isinstance(value, (datetime, date)):
        text = value.isoformat()
    elif isinstance(value, Enum):
        text = str(value.value)
    elif isinstance(value, str):
        if not value:
            return '`""`'
        text = redact_url(value) if "://" in value else value
    else:
        text = str(value)
    return f"`{text}`"


_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
)


def _constraints(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        for kind, attr, symbol in _BOUNDS:
            if isinstance(item, kind):
                parts.append(f"{symbol} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MultipleOf):
            parts.append(f"multiple of {item.multiple_of}")
        if isinstance(item, annotated_types.MinLen):
            parts.append(f"length >= {item.min_length}")
        if isinstance(item, annotated_types.MaxLen):
            parts.append(f"length <= {item.max_length}")
    return ", ".join(parts)


def render_section(cls: type[BaseSettings], name: str | None = None) -> str:
    """One class: heading, its docstring's first paragraph, and the table of its fields."""
    comments = field_descriptions(cls)
    where = f"Section `{name}` of `Settings`; " if name else ""
    lines = [
        f"## {cls.__name__}",
        "",
        _first_paragraph(cls),
        "",
        f"{where}environment prefix `{_prefix(cls)}`.",
        "",
        "| Environment variable | Field | Type | Default | Constraints | Description |",
        "|---|---|---|---|---|---|",
    ]
    for field_name, field in cls.model_fields.items():
        env = "<br>".join(f"`{env}`" for env in env_names(cls, field_name)) or "(none)"
        description = _markdown(field.description or comments.get(field_name, ""))
        row = [
            env,
            f"`{field_name}`",
            _markdown(_type_name(field.annotation)),
            _format_default(field),
            _constraints(field),
            description,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def render_reference() -> str:
    """The whole of ``docs/settings.md``."""
    parts = [
        "# Settings reference",
        "",
        f"<!-- Generated from segstream/settings.py by `{REGENERATE}`; do not edit by hand. -->",
        "",
        _markdown(inspect.getdoc(settings_module).split("\n\n")[0]),  # type: ignore[union-attr]
        "",
        "Every variable is optional. Secrets are never shown: their default reads `(secret)` (or `unset`).",
        "`segstream config` prints the effective value of every setting and where it came from.",
        f"Regenerate this file with `{REGENERATE}` after changing a setting.",
        "",
    ]
    body = "\n".join(render_section(cls, name) for name, cls in sections())
    return "\n".join(parts) + "\n" + body


def main(argv: list[str] | None = None) -> int:
    """Write docs/settings.md, or with ``--check`` exit 1 when it differs from what the code says."""
    parser = argparse.ArgumentParser(prog=REGENERATE, description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date, write nothing")
    parser.add_argument("--output", type=Path, default=DOC_PATH, help=f"where to write (default {DOC_PATH})")
    args = parser.parse_args(argv)
    expected = render_reference()
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != expected:
            print(f"{args.output} is out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    if current != expected:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(expected, encoding="utf-8", newline="\n")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
