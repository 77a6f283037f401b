"""Server-level Redis figures of a cluster: what is summed over which nodes, and the keys memory samples."""

from __future__ import annotations

import pytest

from segstream.bench.memory import sample_keys
from segstream.bench.redis_cost import RedisSnapshot, aof_growth, combine, cost_per_event, snapshot_of
from segstream.bench.redis_nodes import MASTER, REPLICA, RedisNodes, agreed, sum_masters, topology
from segstream.models.state_keys import KeySpace


def test_topology_counts_masters_and_replicas():
    nodes = [("h:1", MASTER), ("h:2", REPLICA), ("h:3", MASTER), ("h:4", REPLICA)]
    out = topology(True, nodes)
    assert (out["kind"], out["masters"], out["replicas"]) == ("cluster", 2, 2)
    assert out["nodes"][1] == {"address": "h:2", "role": REPLICA}
    assert topology(False, [("h:1", MASTER)])["kind"] == "single"


def test_sums_over_the_masters_leave_the_replicas_out_and_need_every_master():
    assert sum_masters([(MASTER, 10), (REPLICA, 10), (MASTER, 5)]) == 15
    assert sum_masters([(MASTER, 10), (MASTER, None)]) is None  # one master did not say: no figure
    assert sum_masters([(REPLICA, 10)]) is None


def test_agreed_gives_one_value_or_each_node_s():
    assert agreed(["always", "always"]) == "always"
    assert agreed(["always", "everysec"]) == ["always", "everysec"]


def test_a_single_server_url_is_one_master_without_connecting():
    nodes = RedisNodes("redis://127.0.0.1:1/0", {})
    try:
        assert [(n.address, n.role) for n in nodes.nodes] == [("127.0.0.1:1", MASTER)]
        assert nodes.describe()["kind"] == "single" and len(nodes.masters) == 1
    finally:
        nodes.close()


def test_a_cluster_snapshot_sums_cpu_over_every_node_and_commands_and_aof_over_the_masters():
    m1 = RedisSnapshot(1.0, {"evalsha": (10, 100)}, forks=1, aof_bytes=1000)
    m2 = RedisSnapshot(2.0, {"evalsha": (5, 50), "get": (1, 1)}, forks=0, aof_bytes=500)
    r1 = RedisSnapshot(0.5, {"evalsha": (10, 90)}, forks=2, aof_bytes=900)  # replays m1's writes
    out = combine([(MASTER, m1), (MASTER, m2), (REPLICA, r1)])
    assert out.cpu_seconds == pytest.approx(3.5)
    assert out.commands == {"evalsha": (15, 150), "get": (1, 1)}
    assert (out.forks, out.master_forks, out.aof_bytes) == (3, 1, 1500)
    # A single server is its own master: combining it alone changes nothing that is reported.
    alone = combine([(MASTER, m1)])
    assert (alone.cpu_seconds, alone.commands, alone.aof_bytes) == (1.0, m1.commands, 1000)


def test_aof_bytes_per_event_only_without_a_rewrite_on_a_master():
    before = snapshot_of({}, {}, {"total_forks": 1}, {"aof_current_size": 1_000})
    assert before.aof_bytes == 1_000 and snapshot_of({}, {}).aof_bytes is None
    grown = snapshot_of({}, {}, {"total_forks": 1}, {"aof_current_size": 21_000})
    assert aof_growth(before, grown, 100) == pytest.approx(200.0)
    assert cost_per_event(before, grown, 100)["aof_bytes_per_event"] == pytest.approx(200.0)
    rewritten = snapshot_of({}, {}, {"total_forks": 2}, {"aof_current_size": 30_000})
    assert aof_growth(before, rewritten, 100) is None
    assert aof_growth(before, snapshot_of({}, {}, {"total_forks": 1}, {}), 100) is None  # AOF switched off
    # On a cluster only the masters' forks matter: a replica's rewrite leaves the masters' files alone.
    a = combine([(MASTER, RedisSnapshot(0, {}, 0, 100)), (REPLICA, RedisSnapshot(0, {}, 0, 100))])
    b = combine([(MASTER, RedisSnapshot(0, {}, 0, 300)), (REPLICA, RedisSnapshot(0, {}, 1, 10))])
    assert aof_growth(a, b, 2) == pytest.approx(100.0)


def test_memory_samples_the_v2_keys_of_the_store():
    keys = KeySpace("bench-x:mem", 16)
    sample = sample_keys(keys, 1000, "m")
    assert len(sample) == 200
    customer, history, marker = sample[1]  # customer 5 (every 5th of 1000)
    assert (customer, history) == (keys.customer("M00000005"), keys.history("M00000005"))
    assert marker == keys.event("m-5-0", "M00000005")
    assert customer.startswith("bench-x:mem:v2:{") and ":c:M00000005" in customer
    assert len(sample_keys(keys, 3, "m")) == 3
