"""Parity after the two-worker phase: the state two workers built in Redis equals the batch aggregates.

Every customer's aggregates read back from the store (as of its watermark) must equal, integer for
integer, :func:`segstream.models.features.batch_aggregates` over the same events as of the latest one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from segstream.bench.workload import Workload
from segstream.models.state_keys import DEFAULT_SHARDS


def batch_view(workload: Workload) -> dict[str, dict[str, int]]:
    """The trainer-side aggregates of the workload's events, per customer."""
    import pandas as pd

    from segstream.models.features import batch_aggregates

    frame = pd.DataFrame({
        "customer_id": [r["customer_id"] for r in workload.records],
        "timestamp": pd.to_datetime([r["timestamp"] for r in workload.records], unit="ms", utc=True),
        "amount": [r["amount"] for r in workload.records],
    })  # fmt: skip
    return {str(cid): {k: int(v) for k, v in row.items()} for cid, row in batch_aggregates(frame).iterrows()}


async def _stream_view(url: str, client_kwargs: dict[str, Any], prefix: str, ids: list[str],
                       shards: int) -> dict[str, Any]:  # fmt: skip
    from segstream.streams.state import open_store

    store = open_store(url, prefix=prefix, shards=shards, **client_kwargs)
    try:
        out: dict[str, Any] = {}
        for i in range(0, len(ids), 2000):
            views = await store.view(ids[i : i + 2000])
            out.update({cid: v.aggregates for cid, v in views.items()})
        return out
    finally:
        await store.close()


def check_parity(url: str, client_kwargs: dict[str, Any], prefix: str, workload: Workload,
                 shards: int = DEFAULT_SHARDS) -> dict[str, Any]:  # fmt: skip
    """Compare the store under ``prefix`` (laid out in ``shards`` shards, as the workers) with the batch
    aggregates of ``workload``.

    Returns:
        ``customers``, ``missing`` (not in the store), ``mismatched`` (differing aggregates), ``exact``
        and up to three ``examples`` of differences.
    """
    expected = batch_view(workload)
    ids = sorted(expected)
    got = asyncio.run(_stream_view(url, client_kwargs, prefix, ids, shards))
    missing = [cid for cid in ids if cid not in got]
    mismatched = [cid for cid in ids if cid in got and dict(got[cid]) != expected[cid]]
    examples = [{"customer_id": cid, "stream": dict(got[cid]), "batch": expected[cid]} for cid in mismatched[:3]]
    return {"customers": len(ids), "missing": len(missing), "mismatched": len(mismatched),
            "exact": not missing and not mismatched, "examples": examples}  # fmt: skip
