"""``segstream bench``: the streaming path held to numbers, as ratios measured in one run.

One run measures, on the same broker, Redis, settings and events: a bare faust agent that only counts
raw events (:mod:`.ceiling`), the real worker started through its CLI (:mod:`.harness`), and a naive
worker kept as the baseline (:mod:`.baseline`); plus micro-benchmarks (:mod:`.micro`) and memory
(:mod:`.memory`). :mod:`.report` turns the figures into a table and JSON with stable top-level keys.
"""
