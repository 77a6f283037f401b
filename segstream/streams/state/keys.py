"""The Redis key layout, version 1. Pinned by a golden test: change it only with a new version.

``{prefix}:v1:c:{customer}``  hash: the fold (ft lt fp lp p g n r rc, day buckets ``d:<day>`` net cents and
                              ``q:<day>`` purchases), the segment record (sg sp sn sv sa sd), apply's cache of
                              the window sums (w1..w6 as of day wd, valid while wc = p + r) and the event time
                              each campaign last fired for the customer (``k.<campaign>``: a ':' second would
                              mark a day bucket); added fields, so a hash without them is still version 1
``{prefix}:v1:e:{event_id}``  string with a TTL: "1" applied, "2" done (the dedupe marker)
``{prefix}:v1:h:{customer}``  list: the latest segment changes as JSON, newest first
``{prefix}:v1:sales``         hash: ``<day>:total`` and ``<day>:segment:<id>`` streamed sales in cents
``{prefix}:v1:wm``            string: the event-time watermark in epoch ms
``{prefix}:v1:due``           sorted set: customer -> event time of the next inactivity check
``{prefix}:v1:forecast``      string: the latest forecast refresh as JSON
``{prefix}:v1:cap:{day}:{campaign}``  set with a TTL: the trigger ids a campaign fired on a UTC day
"""

from __future__ import annotations

from dataclasses import dataclass

from segstream.streams.state.base import KEY_FORMAT_VERSION


@dataclass(frozen=True)
class KeySpace:
    """Builds every key the store uses from one prefix."""

    prefix: str = "segstream"

    @property
    def root(self) -> str:
        """``{prefix}:v{version}``: everything the store writes lives under it."""
        return f"{self.prefix}:v{KEY_FORMAT_VERSION}"

    def customer(self, customer_id: str) -> str:
        """The customer's fold and segment record."""
        return f"{self.root}:c:{customer_id}"

    def event(self, event_id: str) -> str:
        """The dedupe marker of one event."""
        return f"{self.root}:e:{event_id}"

    def history(self, customer_id: str) -> str:
        """The customer's latest segment changes."""
        return f"{self.root}:h:{customer_id}"

    @property
    def sales(self) -> str:
        """Streamed daily sales."""
        return f"{self.root}:sales"

    @property
    def watermark(self) -> str:
        """The event-time watermark."""
        return f"{self.root}:wm"

    @property
    def due(self) -> str:
        """The inactivity check schedule."""
        return f"{self.root}:due"

    def cap(self, campaign: str, day: int) -> str:
        """The trigger ids a campaign fired on one UTC day (its daily cap counts them)."""
        return f"{self.root}:cap:{day}:{campaign}"

    @property
    def forecast(self) -> str:
        """The latest forecast refresh."""
        return f"{self.root}:forecast"
