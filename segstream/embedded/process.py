"""One detached server process with its pid file, metadata file and log file in a state directory.

The process is started in its own session (``start_new_session``) so it outlives the CLI that started it.
Identity is checked by pid *and* process start time (kept in ``<name>.meta.json``), so a stale pid file
whose pid was reused by an unrelated process is recognised and removed rather than killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from segstream.embedded.errors import ServiceStartError

# Popen objects of children we started, kept so they are not garbage-collected (and warned about) while
# the server still runs, and so we can reap them (no zombies) when this same process stops them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """A named server process whose bookkeeping lives in ``state_dir``.

    Args:
        name: short service name; files are ``<name>.pid``, ``<name>.meta.json``, ``<name>.log``.
        state_dir: directory for those files.
        argv: command line to start the server.
        probe: returns True once the server answers requests.
    """

    name: str
    state_dir: Path
    argv: Sequence[str]
    probe: Callable[[], bool]
    cwd: Path | None = None
    env: dict[str, str] | None = field(default=None, repr=False)

    @property
    def pid_file(self) -> Path:
        """Plain-text pid file (``kill $(cat kafka.pid)`` works)."""
        return self.state_dir / f"{self.name}.pid"

    @property
    def meta_file(self) -> Path:
        """JSON with pid, start time and command line, used to tell our process from a reused pid."""
        return self.state_dir / f"{self.name}.meta.json"

    @property
    def log_file(self) -> Path:
        """Combined stdout/stderr of the server."""
        return self.state_dir / f"{self.name}.log"

    def _forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        self.meta_file.unlink(missing_ok=True)

    def _reap(self, pid: int) -> None:
        child = _CHILDREN.get(pid)
        if child is not None and child.poll() is not None:
            _CHILDREN.pop(pid, None)

    def pid(self) -> int | None:
        """The pid of our running server, or None (stale pid files are removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        self._reap(pid)
        try:
            proc = psutil.Process(pid)
            alive = proc.status() != psutil.STATUS_ZOMBIE
            started = proc.create_time()
        except psutil.Error:
            alive, started = False, 0.0
        expected = self._meta_create_time()
        if not alive or (expected is not None and abs(started - expected) > 1.0):
            self._forget()
            return None
        return pid

    def _meta_create_time(self) -> float | None:
        try:
            return float(json.loads(self.meta_file.read_text())["create_time"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_running(self) -> bool:
        """True when our server process is alive."""
        return self.pid() is not None

    def start(self) -> int:
        """Start the server detached and record its pid; returns the pid. Does not wait for readiness."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(
                f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(self.argv)}\n".encode()
            )
            log.flush()
            child = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd or self.state_dir,
                env=self.env,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN[child.pid] = child
        try:
            create_time = psutil.Process(child.pid).create_time()
        except psutil.Error:
            create_time = time.time()
        self.pid_file.write_text(f"{child.pid}\n")
        meta = {"pid": child.pid, "create_time": create_time, "argv": list(self.argv)}
        self.meta_file.write_text(json.dumps(meta))
        return child.pid

    def wait_ready(self, timeout: float) -> None:
        """Block until the probe succeeds.

        Raises:
            ServiceStartError: the process exited, or did not answer within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.probe():
                return
            if not self.is_running():
                raise ServiceStartError(
                    f"{self.name} exited during start-up; see {self.log_file}:\n{tail(self.log_file)}"
                )
            if time.monotonic() >= deadline:
                raise ServiceStartError(
                    f"{self.name} did not answer within {timeout:.0f}s; see {self.log_file}:\n"
                    f"{tail(self.log_file)}"
                )
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> bool:
        """Send ``sig`` and wait for exit, escalating to SIGKILL after ``timeout``. False if not running."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            proc = psutil.Process(pid)
            os.kill(pid, sig)
        except (psutil.Error, ProcessLookupError):
            self._forget()
            return True
        if not self._wait_gone(proc, pid, timeout):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_gone(proc, pid, 5.0)
        self._forget()
        return True

    def _wait_gone(self, proc: psutil.Process, pid: int, timeout: float) -> bool:
        child = _CHILDREN.get(pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child is not None and child.poll() is not None:
                _CHILDREN.pop(pid, None)
                return True
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
            time.sleep(0.02)
        return False
