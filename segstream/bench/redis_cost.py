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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RedisSnapshot:
    """The server process's CPU seconds (user + system), per-command (calls, usec) and forks so far."""

    cpu_seconds: float
    commands: dict[str, tuple[int, int]]
    forks: int = 0


def snapshot_of(
    cpu_info: dict[str, Any], commandstats: dict[str, Any], stats_info: dict[str, Any] | None = None
) -> RedisSnapshot:
    """A :class:`RedisSnapshot` from the parsed ``INFO cpu``, ``INFO commandstats`` and ``INFO stats``."""
    cpu = sum(float(cpu_info.get(k, 0.0)) for k in ("used_cpu_user", "used_cpu_sys"))
    commands = {
        name.removeprefix("cmdstat_"): (int(stats.get("calls", 0)), int(stats.get("usec", 0)))
        for name, stats in commandstats.items()
        if isinstance(stats, dict)
    }
    return RedisSnapshot(cpu, commands, int((stats_info or {}).get("total_forks", 0)))


class RedisCostMeter:
    """Snapshots of one Redis server for the phases of a run; a failed ``INFO`` gives no figure, never an error."""

    def __init__(self, url: str, client_kwargs: dict[str, Any]) -> None:
        import redis

        self._client = redis.Redis.from_url(url, **client_kwargs)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    def snapshot(self) -> RedisSnapshot | None:
        """Now, or None when the server would not say (``INFO`` disabled, connection lost)."""
        try:
            client = self._client
            return snapshot_of(client.info("cpu"), client.info("commandstats"), client.info("stats"))
        except self._errors:
            return None

    def cost_since(self, before: RedisSnapshot | None, events: int) -> dict[str, Any]:
        """:func:`cost_per_event` from ``before`` to now (``{}`` when either snapshot is missing)."""
        after = self.snapshot()
        return cost_per_event(before, after, events) if before is not None and after is not None else {}

    def close(self) -> None:
        self._client.close()


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
            "forks": after.forks - before.forks, "commands": ordered}  # fmt: skip


def scripts_us_per_event(cost: dict[str, Any]) -> float | None:
    """Microseconds per event inside Lua scripts (``EVALSHA`` and ``EVAL``), or None when none ran."""
    commands = cost.get("commands") or {}
    found = [commands[name]["us_per_event"] for name in ("evalsha", "eval") if name in commands]
    return sum(found) if found else None
