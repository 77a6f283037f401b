"""What Redis spends per event in a bench phase, from ``INFO cpu`` and ``INFO commandstats`` before and after.

Redis shares the machine's two cores with the worker, and its cost per event is not a constant: it grows with
the customers' histories. Each event's Lua ``apply`` reads the customer's whole hash and parses every day bucket
in Lua. Measured against a Redis with nothing else running (2026-11-24): the bench's 100k events cost
36.5 us/event of script time at full speed, then latency-phase events for the same, by then fuller, customers
56 us/event, at any batch size. The latency phase then runs near what the worker's two Lua calls per batch can
take, though it offers half the throughput. These figures make that visible in every run.

``forks`` counts the server's child processes started in the phase (``INFO stats`` ``total_forks``). The
embedded stack saves no snapshots, so each is an AOF rewrite: Redis rewrites its append-only file once it has
grown by ``auto-aof-rewrite-percentage`` (100%) and is past ``auto-aof-rewrite-min-size`` (64 MB), which at the
latency phase's rate is every ~12 s. The child takes a core of the two for ~0.4 s. In seven 10 s phases at
5,300 events/s (2026-11-29) the worst half second (p99 150-270 ms) came 9.5-10 s in every time, and where it was
checked that was the rewrite; without their worst second the phases' p99 was 83-101 ms.

Inner commands of a script (``HGETALL``, ``HSET``, ...) are counted by Redis both on their own and inside the
script's ``EVALSHA`` time. On a shared server (``--use-running``) other clients' commands count too.

On a Redis Cluster every node is read (see :mod:`segstream.bench.redis_nodes`): CPU and forks are summed over
all nodes, masters and replicas; commands and AOF bytes over the masters only (a replica replays its master's
writes, which would count every command twice).

``aof_bytes_per_event`` is the growth of the masters' ``aof_current_size``; it is left out (None) when a master
forked in the phase, since a rewrite shrinks the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from segstream.bench.redis_nodes import MASTER, RedisNodes, sum_masters


@dataclass(frozen=True)
class RedisSnapshot:
    """The server's CPU seconds (user + system), per-command (calls, usec) and forks so far.

    ``aof_bytes`` is the append-only file's size (None with AOF off); ``master_forks`` the forks of the servers
    whose AOF is counted (of a single server: all of them).
    """

    cpu_seconds: float
    commands: dict[str, tuple[int, int]]
    forks: int = 0
    aof_bytes: int | None = None
    master_forks: int | None = None


def snapshot_of(
    cpu_info: dict[str, Any],
    commandstats: dict[str, Any],
    stats_info: dict[str, Any] | None = None,
    persistence_info: dict[str, Any] | None = None,
) -> RedisSnapshot:
    """A :class:`RedisSnapshot` from the parsed ``INFO cpu``, ``commandstats``, ``stats`` and ``persistence``."""
    cpu = sum(float(cpu_info.get(k, 0.0)) for k in ("used_cpu_user", "used_cpu_sys"))
    commands = {
        name.removeprefix("cmdstat_"): (int(stats.get("calls", 0)), int(stats.get("usec", 0)))
        for name, stats in commandstats.items()
        if isinstance(stats, dict)
    }
    aof = (persistence_info or {}).get("aof_current_size")
    return RedisSnapshot(cpu, commands, int((stats_info or {}).get("total_forks", 0)),
                         int(aof) if aof is not None else None)  # fmt: skip


def combine(parts: Sequence[tuple[str, RedisSnapshot]]) -> RedisSnapshot:
    """One snapshot of several servers (role, snapshot): CPU and forks of all, commands and AOF of the masters."""
    commands: dict[str, tuple[int, int]] = {}
    for role, snap in parts:
        if role == MASTER:
            for name, (calls, usec) in snap.commands.items():
                before = commands.get(name, (0, 0))
                commands[name] = (before[0] + calls, before[1] + usec)
    aof = sum_masters((role, snap.aof_bytes) for role, snap in parts)
    return RedisSnapshot(
        cpu_seconds=sum(snap.cpu_seconds for _, snap in parts),
        commands=commands,
        forks=sum(snap.forks for _, snap in parts),
        aof_bytes=int(aof) if aof is not None else None,
        master_forks=sum(snap.forks for role, snap in parts if role == MASTER),
    )


class RedisCostMeter:
    """Snapshots of the Redis behind a URL (every node of a cluster) for the phases of a run.

    A failed ``INFO`` gives no figure, never an error.
    """

    def __init__(self, url: str, client_kwargs: dict[str, Any]) -> None:
        import redis

        self._nodes: RedisNodes | None = None
        try:
            self._nodes = RedisNodes(url, client_kwargs)  # a cluster client asks for the nodes right away
        except (redis.RedisError, OSError):
            pass

    def snapshot(self) -> RedisSnapshot | None:
        """Now, or None when a server would not say (``INFO`` disabled, connection lost)."""
        if self._nodes is None:
            return None
        try:
            parts = []
            for node in self._nodes.nodes:
                c = node.client
                parts.append((node.role, snapshot_of(c.info("cpu"), c.info("commandstats"), c.info("stats"),
                                                     c.info("persistence"))))  # fmt: skip
        except self._nodes.errors:
            return None
        return combine(parts)

    def cost_since(self, before: RedisSnapshot | None, events: int) -> dict[str, Any]:
        """:func:`cost_per_event` from ``before`` to now (``{}`` when either snapshot is missing)."""
        after = self.snapshot()
        return cost_per_event(before, after, events) if before is not None and after is not None else {}

    def close(self) -> None:
        if self._nodes is not None:
            self._nodes.close()


def cost_per_event(before: RedisSnapshot, after: RedisSnapshot, events: int) -> dict[str, Any]:
    """Redis CPU per event, forks meanwhile and, per command that ran, calls and microseconds per event and per call.

    Commands are ordered by time spent, most first. Returns ``{}`` when ``events`` is not positive.
    """
    if events <= 0:
        return {}
    commands: dict[str, dict[str, float]] = {}
    for name, (calls, usec) in after.commands.items():
        calls_before, usec_before = before.commands.get(name, (0, 0))
        calls, usec = calls - calls_before, usec - usec_before
        if calls > 0:
            commands[name] = {"calls_per_event": calls / events, "us_per_event": usec / events,
                              "us_per_call": usec / calls}  # fmt: skip
    ordered = dict(sorted(commands.items(), key=lambda item: -item[1]["us_per_event"]))
    return {"events": events, "cpu_us_per_event": 1e6 * (after.cpu_seconds - before.cpu_seconds) / events,
            "forks": after.forks - before.forks, "aof_bytes": after.aof_bytes,
            "aof_bytes_per_event": aof_growth(before, after, events), "commands": ordered}  # fmt: skip


def aof_growth(before: RedisSnapshot, after: RedisSnapshot, events: int) -> float | None:
    """AOF bytes appended per event, or None without AOF figures or when a rewrite may have shrunk the file."""
    if before.aof_bytes is None or after.aof_bytes is None or events <= 0:
        return None
    forked = (after.master_forks if after.master_forks is not None else after.forks) - (
        before.master_forks if before.master_forks is not None else before.forks
    )
    grown = after.aof_bytes - before.aof_bytes
    return grown / events if forked == 0 and grown >= 0 else None


def scripts_us_per_event(cost: dict[str, Any]) -> float | None:
    """Microseconds per event inside Lua scripts (``EVALSHA`` and ``EVAL``), or None when none ran."""
    commands = cost.get("commands") or {}
    found = [commands[name]["us_per_event"] for name in ("evalsha", "eval") if name in commands]
    return sum(found) if found else None
