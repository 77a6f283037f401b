"""The ``postgres_server`` fixture: a real PostgreSQL with password auth, reachable on 127.0.0.1 only."""

from __future__ import annotations

import socket

import psutil
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from segstream.embedded.postgres import PostgresServer


def test_create_insert_and_read_back(postgres_server: PostgresServer) -> None:
    engine = sa.create_engine(postgres_server.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE fixture_rows (id integer PRIMARY KEY, label text NOT NULL)"))
            conn.execute(
                sa.text("INSERT INTO fixture_rows (id, label) VALUES (:id, :label)"),
                [{"id": 1, "label": "one"}, {"id": 2, "label": "zwei"}, {"id": 3, "label": "trois"}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, label FROM fixture_rows ORDER BY id")).all()
            who = conn.execute(sa.text("SELECT current_user, current_database(), inet_server_addr()::text")).one()
            driver = conn.connection.dbapi_connection.__class__.__module__
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE fixture_rows"))
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [(1, "one"), (2, "zwei"), (3, "trois")]
    assert tuple(who) == ("segstream", "segstream", "127.0.0.1/32")
    assert driver.startswith("psycopg")  # psycopg 3, not psycopg2


def test_url_shape(postgres_server: PostgresServer) -> None:
    url = make_url(postgres_server.url)
    assert (url.drivername, url.username, url.host, url.port, url.database) == (
        "postgresql+psycopg",
        "segstream",
        "127.0.0.1",
        postgres_server.port,
        "segstream",
    )
    assert url.password == postgres_server.password


def test_wrong_password_is_refused(postgres_server: PostgresServer) -> None:
    wrong = make_url(postgres_server.url).set(password=postgres_server.password + "-wrong")
    engine = sa.create_engine(wrong)
    try:
        with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
            with engine.connect():
                pass
    finally:
        engine.dispose()


def test_role_is_not_superuser_and_password_is_scram(postgres_server: PostgresServer) -> None:
    engine = sa.create_engine(postgres_server.superuser_url())
    try:
        with engine.connect() as conn:
            superuser, verifier = conn.execute(
                sa.text("SELECT rolsuper, rolpassword FROM pg_authid WHERE rolname = 'segstream'")
            ).one()
            hba = conn.execute(sa.text("SELECT type, address, auth_method FROM pg_hba_file_rules")).all()
    finally:
        engine.dispose()
    assert superuser is False
    assert verifier.startswith("SCRAM-SHA-256$")
    assert [tuple(rule) for rule in hba] == [("host", "127.0.0.1", "scram-sha-256")]


def _non_loopback_ipv4() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None


def test_listens_on_loopback_tcp_only(postgres_server: PostgresServer) -> None:
    postmaster = psutil.Process(postgres_server.pid)
    sockets = postmaster.net_connections(kind="all")
    tcp = [(c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN]
    assert tcp == [("127.0.0.1", postgres_server.port)]
    assert not [c.laddr for c in sockets if c.family == socket.AF_UNIX and c.laddr]  # no named Unix-domain socket
    other = _non_loopback_ipv4()
    if other is not None:
        with pytest.raises(OSError):
            socket.create_connection((other, postgres_server.port), timeout=2).close()


def test_server_does_not_run_as_root(postgres_server: PostgresServer) -> None:
    assert psutil.Process(postgres_server.pid).uids().effective != 0
