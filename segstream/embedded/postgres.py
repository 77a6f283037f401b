"""A real, throwaway PostgreSQL server on loopback, from the binaries of the ``pgserver`` wheel (tests, dev).

``start_postgres(workdir, password=...)`` runs ``initdb`` and ``postgres`` from ``pgserver/pginstall/bin`` directly
(pgserver's own Python API is not used: it creates system users, chmods every parent directory up to ``/`` and
sets up trust authentication). The server

* listens on TCP ``127.0.0.1`` only; Unix-domain sockets are switched off;
* accepts only ``scram-sha-256`` password logins (``pg_hba.conf`` has a single ``host`` line);
* has a login role ``segstream`` (not a superuser) owning a database ``segstream``.

PostgreSQL refuses to run as root. When this process is root the server runs as an unprivileged user
(``nobody``, or ``$SEGSTREAM_PG_USER``) through ``subprocess``'s ``user=``/``group=``/``extra_groups=[]``
(setresuid/setresgid/setgroups in the child, no ``setpriv``/``runuser`` needed). The data directory must then be
reachable by that user: when ``workdir`` is not (pytest's ``/tmp/pytest-of-root`` is mode 0700), the data directory
goes into a fresh private directory under the system temp dir, owned by that user and removed by ``stop()``. When
the wheel itself is not reachable (e.g. a venv under ``/root``), the few files the server needs are copied there too.
Otherwise (not root) everything runs as the current user under ``workdir``.

The server log (``initdb`` and ``postgres`` output) is always ``workdir/postgres.log``, written through a file
descriptor this process opened.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from segstream.embedded.errors import PostgresStartError
from segstream.embedded.process import tail

HOST = "127.0.0.1"
ROLE = "segstream"
DATABASE = "segstream"
SUPERUSER = "postgres"
UNPRIVILEGED_USER = "nobody"

# Server settings, passed as ``-c name=value``. fsync / synchronous_commit / full_page_writes off: the data is
# throwaway test data, so crash safety buys nothing and costs start-up and commit latency (initdb runs with
# --no-sync for the same reason). Never copy these settings to a server whose data matters.
_SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",
    "password_encryption": "scram-sha-256",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "50",
    "timezone": "UTC",
    "logging_collector": "off",
}
_PG_HBA = "# written by segstream.embedded.postgres: password logins over loopback TCP, nothing else\n" + (
    f"host all all {HOST}/32 scram-sha-256\n"
)


@dataclass(frozen=True)
class _Identity:
    """Who the server runs as; ``switch`` when that differs from this (root) process."""

    uid: int
    gid: int
    name: str
    switch: bool

    def popen_kwargs(self) -> dict[str, Any]:
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, path: Path) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid)


def _server_identity() -> _Identity:
    if os.geteuid() != 0:
        return _Identity(os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name, switch=False)
    name = os.environ.get("SEGSTREAM_PG_USER") or UNPRIVILEGED_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PostgresStartError(
            f"running as root, and PostgreSQL refuses root: no user {name!r} to run it as "
            "(set SEGSTREAM_PG_USER to an unprivileged user)"
        ) from None
    if entry.pw_uid == 0:
        raise PostgresStartError(f"SEGSTREAM_PG_USER={name!r} is root; PostgreSQL needs an unprivileged user")
    return _Identity(entry.pw_uid, entry.pw_gid, name, switch=True)


def _allowed(st: os.stat_result, who: _Identity, user_bit: int, group_bit: int, other_bit: int) -> bool:
    if st.st_uid == who.uid:
        return bool(st.st_mode & user_bit)
    if st.st_gid == who.gid:  # supplementary groups are cleared (extra_groups=[])
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


def _reachable(path: Path, who: _Identity) -> bool:
    """Whether ``who`` may traverse every directory from ``/`` down to ``path`` (mode bits; ACLs ignored)."""
    if not who.switch:
        return True
    path = path.resolve()
    try:
        return all(
            _allowed(p.stat(), who, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH) for p in (path, *path.parents)
        )
    except OSError:
        return False


def _pginstall() -> Path:
    """``pgserver/pginstall`` of the installed wheel, found without importing pgserver (its import has side effects)."""
    spec = importlib.util.find_spec("pgserver")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        root = Path(location) / "pginstall"
        if all(os.access(root / "bin" / name, os.X_OK) for name in ("initdb", "postgres")):
            return root
    where = f" (looked in {', '.join(locations)})" if locations else ""
    raise PostgresStartError(
        f"no PostgreSQL binaries: pgserver/pginstall/bin/{{initdb,postgres}} not found{where}; "
        "install the dev extras (pip install -e '.[dev]', which includes the pgserver wheel)"
    )


# What initdb and postgres read from the wheel: the two programs, the server's loadable modules (plpgsql, encoding
# conversions), share/ (postgres.bki, timezone data, ...), and libpq, which initdb loads from an RPATH of
# $ORIGIN/../../../pgserver.libs. Paths are relative to site-packages so that RPATH still resolves in a copy.
_NEEDED = (
    "pgserver/pginstall/bin/initdb",
    "pgserver/pginstall/bin/postgres",
    "pgserver/pginstall/lib/postgresql",
    "pgserver/pginstall/share/postgresql",
    "pgserver.libs",
)


def _usable_by(pginstall: Path, who: _Identity) -> bool:
    site = pginstall.parent.parent
    for rel in _NEEDED:
        path = site / rel
        if not path.exists():
            continue
        if not _reachable(path if path.is_dir() else path.parent, who):
            return False
        if path.is_file() and not _allowed(path.stat(), who, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return False
    return True


def _stage_binaries(pginstall: Path, dest: Path, who: _Identity) -> Path:
    """Copy what the server needs into ``dest`` (owned by ``who``); returns the copy's ``pginstall``."""
    site = pginstall.parent.parent
    for rel in _NEEDED:
        source, target = site / rel, dest / rel
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        elif source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for current, dirs, files in os.walk(dest):
        for name in (*dirs, *files):
            os.lchown(Path(current) / name, who.uid, who.gid)
    os.chown(dest, who.uid, who.gid)
    return dest / "pgserver" / "pginstall"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    # A clean environment: no PGDATA/PGPORT/PGHOST/LD_LIBRARY_PATH from the caller. TZ=UTC also spares initdb its
    # scan of the time-zone database.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}


@dataclass
class PostgresServer:
    """A running server started by :func:`start_postgres`. ``url`` is for SQLAlchemy with psycopg 3."""

    port: int
    password: str = field(repr=False)
    data_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes]
    superuser_password: str = field(repr=False)
    run_as: str
    _private_dir: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``postgresql+psycopg://segstream:<password>@127.0.0.1:<port>/segstream``."""
        return f"postgresql+psycopg://{ROLE}:{quote(self.password, safe='')}@{HOST}:{self.port}/{DATABASE}"

    def superuser_url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for the ``postgres`` superuser (to create more databases or roles in a test)."""
        return (
            f"postgresql+psycopg://{SUPERUSER}:{quote(self.superuser_password, safe='')}@{HOST}:{self.port}/"
            f"{database}"
        )

    @property
    def pid(self) -> int:
        """Pid of the postmaster."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        return tail(self.log_file, lines)

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT), then SIGQUIT and SIGKILL if it hangs; removes the private directory. Idempotent."""
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    self.process.send_signal(sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _run_logged(argv: list[str], log_file: Path, who: _Identity, cwd: Path, timeout: float) -> None:
    with log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=_env(),
                timeout=timeout,
                check=False,
                **who.popen_kwargs(),
            )
        except subprocess.TimeoutExpired:
            raise PostgresStartError(
                f"{Path(argv[0]).name} did not finish within {timeout:.0f}s; see {log_file}:\n{tail(log_file, 25)}"
            ) from None
    if result.returncode != 0:
        raise PostgresStartError(
            f"{Path(argv[0]).name} failed (exit {result.returncode}) running as {who.name}; see {log_file}:\n"
            f"{tail(log_file, 25)}"
        )


def _initdb(bindir: Path, data_dir: Path, superuser_password: str, log_file: Path, who: _Identity) -> None:
    runtime = data_dir.parent
    pwfile = runtime / "superuser.pw"
    pwfile.write_text(superuser_password + "\n")
    pwfile.chmod(0o600)
    who.give(pwfile)
    try:
        _run_logged(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(data_dir),
                "--username",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # throwaway data: see _SETTINGS
                "--no-instructions",
            ],
            log_file,
            who,
            runtime,
            timeout=120,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    (data_dir / "pg_hba.conf").write_text(_PG_HBA)  # overwrites initdb's file in place: owner and mode stay


def _launch(bindir: Path, data_dir: Path, port: int, log_file: Path, who: _Identity) -> subprocess.Popen[bytes]:
    argv = [str(bindir / "postgres"), "-D", str(data_dir), "-p", str(port)]
    for name, value in _SETTINGS.items():
        argv += ["-c", f"{name}={value}"]
    with log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            env=_env(),
            close_fds=True,
            **who.popen_kwargs(),
        )


def _wait_and_bootstrap(server: PostgresServer, timeout: float) -> None:
    """Wait until the superuser can log in over TCP, then create the ``segstream`` role and database."""
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + timeout
    while True:
        if not server.alive:
            raise PostgresStartError(
                f"postgres exited during start-up (exit {server.process.returncode}); see {server.log_file}:\n"
                f"{server.log_tail()}"
            )
        try:
            conn = psycopg.connect(
                host=HOST,
                port=server.port,
                user=SUPERUSER,
                password=server.superuser_password,
                dbname="postgres",
                connect_timeout=2,
                autocommit=True,
            )
            break
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                raise PostgresStartError(
                    f"postgres did not accept connections on {HOST}:{server.port} within {timeout:.0f}s "
                    f"(last error: {exc}); see {server.log_file}:\n{server.log_tail()}"
                ) from None
            time.sleep(0.05)
    with conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(server.password))
        )
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(ROLE)))


def _bind_failed(log_file: Path) -> bool:
    text = tail(log_file, 15)
    return "could not bind" in text or "Address already in use" in text


def start_postgres(workdir: Path, *, port: int | None = None, password: str, timeout: float = 60.0) -> PostgresServer:
    """Initialise and start a fresh server; returns once ``url`` accepts logins.

    Args:
        workdir: empty or new directory; holds ``postgres.log`` and, when the server user can reach it, the data.
        port: loopback TCP port; None picks a free one (retried if another process takes it first).
        password: password of the ``segstream`` role (stored as a SCRAM verifier).
        timeout: seconds to wait for the server to accept connections.

    Raises:
        PostgresStartError: the pgserver binaries are missing, initdb failed, or the server did not come up
            (the message includes the tail of the server log).
    """
    if not password:
        raise ValueError("password must not be empty")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = workdir / "postgres.log"
    pginstall = _pginstall()
    who = _server_identity()

    private_dir: Path | None = None
    if _reachable(workdir, who):
        runtime = workdir / "pg"
        runtime.mkdir(mode=0o700)
    else:
        private_dir = Path(tempfile.mkdtemp(prefix="segstream-pg-"))  # mode 0700, handed to the server user
        who.give(private_dir)
        if not _reachable(private_dir, who):
            shutil.rmtree(private_dir, ignore_errors=True)
            raise PostgresStartError(
                f"user {who.name} cannot reach {workdir} nor the temp dir {private_dir.parent}; "
                "pass a workdir it can traverse"
            )
        runtime = private_dir
    who.give(runtime)
    try:
        if not _usable_by(pginstall, who):
            pginstall = _stage_binaries(pginstall, runtime / "bin", who)
        bindir = pginstall / "bin"
        data_dir = runtime / "data"
        superuser_password = secrets.token_urlsafe(24)
        _initdb(bindir, data_dir, superuser_password, log_file, who)

        for attempt in range(5):
            chosen = port if port is not None else _free_port()
            server = PostgresServer(
                port=chosen,
                password=password,
                data_dir=data_dir,
                log_file=log_file,
                process=_launch(bindir, data_dir, chosen, log_file, who),
                superuser_password=superuser_password,
                run_as=who.name,
            )
            try:
                _wait_and_bootstrap(server, timeout)
            except PostgresStartError:
                server.stop()
                if port is None and attempt < 4 and _bind_failed(log_file):
                    continue  # someone took the free port between _free_port() and postgres binding it
                raise
            except BaseException:
                server.stop()
                raise
            server._private_dir = private_dir
            return server
        raise AssertionError("unreachable")
    except BaseException:
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)
        raise
