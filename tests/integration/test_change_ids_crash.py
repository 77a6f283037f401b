"""A worker SIGKILLed between sending a batch's outputs and finalizing it re-emits that batch's segment
changes after the restart (outputs are at-least-once); every copy carries the same ``change_id``, so a
consumer that dedupes on it sends one campaign per change.

Batches form by timing, so the redelivered events need not form the killed batch again: a customer whose
events are split differently can be evaluated on fewer of them, and a change the killed batch sent may then
not recur (docs/contracts.md). The test holds what is guaranteed whatever the split: the store's history was
all sent, anything sent beyond it came from the killed batch, and a change sent twice has one id.
"""

from __future__ import annotations

import collections
import json

import pytest

from segstream.models.state_keys import KeySpace
from segstream.streams.replay import records_from_frame, replay
from tests.integration.worker_support import WorkerEnv, done_count, read_topic, stop, trained, wait_until

pytestmark = pytest.mark.integration


def test_a_change_re_emitted_after_a_crash_keeps_its_id(embedded_stack, redis_client, tmp_path_factory):
    events, root = trained(tmp_path_factory.getbasetemp() / "trained", customers=800, seed=3)
    some = events[events["customer_id"].isin(sorted(events["customer_id"].unique())[:200])]
    records = records_from_frame(some)
    ids = [(r["event_id"], r["customer_id"]) for r in records]
    workdir = tmp_path_factory.mktemp("change-ids")
    rules = workdir / "rules.toml"
    rules.write_text("".join(f'[[campaign]]\nname = "enter-{s}"\nenter = {s}\ncooldown_days = 30\n\n'
                             for s in range(3)))  # every bundle here has segments 0, 1 and 2
    crashing = WorkerEnv(embedded_stack, root, workdir, extra={
        "SEGSTREAM_WORKER_BATCH_SIZE": "200", "SEGSTREAM_WORKER_FAILPOINT_CRASH_BEFORE_FINALIZE": "3",
        "SEGSTREAM_WORKER_CAMPAIGN_RULES": str(rules)})  # fmt: skip
    crashing.create_topics(partitions=1)
    replay(records, crashing.kafka, crashing.topics["transactions"])
    proc = crashing.start_worker()
    proc.wait(120)
    assert proc.returncode == -9, crashing.log_text()[-3000:]  # the failpoint's SIGKILL, not an error
    assert done_count(redis_client, crashing.prefix, ids) < len(ids)
    before = read_topic(crashing.kafka, crashing.topics["segment_changes"])
    assert before, "the crashed batch's changes were sent before the kill"

    resumed = WorkerEnv(embedded_stack, root, workdir, extra={"SEGSTREAM_WORKER_BATCH_SIZE": "200",
                        "SEGSTREAM_WORKER_CAMPAIGN_RULES": str(rules)}, tag=crashing.tag,
                        web_port=crashing.web_port)  # fmt: skip
    proc = resumed.start_worker()
    try:
        wait_until(lambda: done_count(redis_client, resumed.prefix, ids) == len(ids), 120, "every event done", proc,
                   resumed.log_text)  # fmt: skip
    finally:
        stop(proc)
    changes = read_topic(resumed.kafka, resumed.topics["segment_changes"])
    copies = collections.Counter(c["change_id"] for c in changes)
    assert max(copies.values()) == 2, "the batch killed before its finalize must have been re-emitted"
    by_id = collections.defaultdict(set)
    for c in changes:
        by_id[c["change_id"]].add((c["customer_id"], c["previous_segment"], c["segment"], c["model_version"]))
    # One id, one transition. The copy may name a later event_id: the redelivered batch can hold more of the
    # customer's events than the killed one did, but it starts at the same first new event (the id's basis).
    assert all(len(v) == 1 for v in by_id.values()), "one id, one change"
    # Deduped on change_id, every change the store recorded was sent (each once in the history); a change sent
    # but not recorded can only be one the killed batch sent and the redelivery did not make again.
    keys = KeySpace(resumed.prefix)
    history = []
    for cid in some["customer_id"].unique():
        history += [json.loads(h) for h in redis_client.lrange(keys.history(cid), 0, -1)]
    recorded = [h["change_id"] for h in history]
    assert len(recorded) == len(set(recorded)), "a change recorded twice"
    assert set(recorded) <= set(copies), "a recorded change that was never sent"
    assert set(copies) - set(recorded) <= {c["change_id"] for c in before}, "an unrecorded change not from the kill"

    # Campaign triggers: re-emitted with the re-emitted change, under the same trigger_id; deduped on it, each
    # (customer, campaign, change) fired once, and the cooldown state the store holds matches.
    triggers = read_topic(resumed.kafka, resumed.topics["campaign_triggers"])
    assert triggers
    trigger_copies = collections.Counter(t["trigger_id"] for t in triggers)
    assert max(trigger_copies.values()) == 2
    per_id = collections.defaultdict(set)
    for t in triggers:
        per_id[t["trigger_id"]].add((t["customer_id"], t["campaign"], t["change_id"]))
    assert all(len(v) == 1 for v in per_id.values())
    # the cooldowns the store holds come from the recorded changes' triggers
    unique = [t for t in {t["trigger_id"]: t for t in triggers}.values() if t["change_id"] in set(recorded)]
    last = {}
    for t in sorted(unique, key=lambda t: t["event_time_ms"]):
        last[(t["customer_id"], t["campaign"])] = t["event_time_ms"]
    for (cid, campaign), at in last.items():
        assert int(redis_client.hget(keys.customer(cid), f"k.{campaign}")) == at
