"""The dashboard reads; it imports no trainer and nothing of streams (the key layout is in models.state_keys)."""

from __future__ import annotations

import ast
from pathlib import Path

import segstream.dashboard

PACKAGE = Path(segstream.dashboard.__file__).parent
ALLOWED_FROM_STREAMS: set[str] = set()


def test_dashboard_imports_no_trainer_and_nothing_of_streams():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])  # fmt: skip
            for name in names:
                if name.startswith("segstream.trainer") or (
                    name.startswith("segstream.streams") and name not in ALLOWED_FROM_STREAMS
                ):
                    offences.append(f"{path.name} imports {name}")
    assert not offences, offences
