"""Dependencies run one way: models/ is pure; trainer/ and streams/ import models/ and never each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "segstream"

FORBIDDEN = {
    "models": ("segstream.trainer", "segstream.streams", "segstream.dashboard", "segstream.cli",
               "segstream.embedded", "faust", "redis", "kafka", "aiokafka", "streamlit"),
    "trainer": ("segstream.streams", "segstream.dashboard", "segstream.cli", "segstream.embedded",
                "faust", "redis", "kafka", "aiokafka"),
    "streams": ("segstream.trainer", "segstream.dashboard", "segstream.cli"),
    # The bench is a library the CLI calls (it may start `segstream` as a child process), never the reverse.
    "bench": ("segstream.cli", "segstream.dashboard"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package):
    offences = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for name in _imports(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[package]):
                offences.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not offences, "\n".join(offences)
