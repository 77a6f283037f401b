"""Session fixture ``postgres_server``: a real PostgreSQL (pgserver wheel binaries) on a free loopback port.

Registered in ``tests/integration/conftest.py``. The server is started lazily, once per session, only when a test
asks for it; as root it runs as ``nobody`` (see :mod:`segstream.embedded.postgres`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from segstream.embedded.postgres import PostgresServer, start_postgres


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A session-wide server; ``.url`` logs in as role ``segstream`` to database ``segstream`` (scram-sha-256)."""
    server = start_postgres(tmp_path_factory.mktemp("postgres"), password=secrets.token_urlsafe(18))
    try:
        yield server
    finally:
        server.stop()
