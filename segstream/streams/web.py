"""The worker's read-only HTTP side: ``/health``, ``/metrics`` (Prometheus text), ``/customers/{id}``.

``/health`` is 503 "unhealthy" when the worker cannot do its job (state store unreachable, no model), and
200 "degraded" when it works but too much of its input is dead-lettered (the dead-letter alert, see
:mod:`segstream.streams.monitoring`): bad input is not the worker's fault, and restarting or unrouting it
would not help, so the status code stays 200 and the body says why.

It runs its own small aiohttp server on the worker's event loop (faust's built-in web server is switched
off so there is one server and one port, ``SEGSTREAM_WEB_PORT``, default 6066).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from segstream.models.events import is_valid_customer_id
from segstream.streams.bundle_watch import ModelHolder
from segstream.streams.customers import customer_document
from segstream.streams.monitoring import WorkerStats
from segstream.streams.state.base import StateStore

log = logging.getLogger("segstream.worker")


@dataclass
class WebContext:
    """What the endpoints read."""

    store: StateStore
    holder: ModelHolder
    stats: WorkerStats
    lag: Callable[[], Mapping[str, int] | None] = lambda: None
    customer_token: str | None = None  # the bearer token /customers/{id} requires (None: open)


def metrics_text(ctx: WebContext) -> str:
    """The Prometheus exposition text of the worker's counters and gauges."""
    s = ctx.stats
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}")

    metric("segstream_events_processed_total", "counter", "Events scored and emitted.", [("", s.processed)])
    metric("segstream_dead_letters_total", "counter", "Invalid messages sent to dead-letters.", [("", s.dead_letters)])
    metric(
        "segstream_dead_letters_by_reason_total",
        "counter",
        "Invalid messages sent to dead-letters, per reason code.",
        [(f'{{reason="{_escape(k)}"}}', v) for k, v in sorted(s.dead_letters_by_reason.items())],
    )
    dl = s.dead_letter_status()
    metric(
        "segstream_dead_letter_share",
        "gauge",
        f"Dead letters / (dead letters + valid events) over the last {dl.window_s} s.",
        [("", float(dl.share))],
    )
    metric(
        "segstream_dead_letter_alert",
        "gauge",
        "1 while the dead-letter share is at or above its alert threshold.",
        [("", int(dl.alert))],
    )
    metric("segstream_duplicates_total", "counter", "Redelivered or duplicated events skipped.", [("", s.duplicates)])
    metric("segstream_segment_changes_total", "counter", "Segment changes emitted.", [("", s.changes)])
    metric(
        "segstream_tree_disagreements_total",
        "counter",
        "Segment changes whose decision tree predicts another segment than the segmenter.",
        [("", s.tree_disagreements)],
    )
    metric(
        "segstream_segment_flaps_total",
        "counter",
        "Segment changes that return a customer to the segment it left within the flap window of event time.",
        [("", s.flaps.flaps)],
    )
    metric(
        "segstream_inactivity_changes_total",
        "counter",
        "Changes from the inactivity sweep.",
        [("", s.inactivity_changes)],
    )
    metric(
        "segstream_sweep_evaluations_total",
        "counter",
        "Customers the inactivity sweep evaluated on the shards this worker holds the sweep lease of.",
        [("", s.swept_customers)],
    )
    metric("segstream_campaign_triggers_total", "counter", "Campaign triggers sent.", [("", s.campaign_triggers)])
    metric(
        "segstream_campaign_suppressed_total",
        "counter",
        "Campaign triggers the rules held back, by why (cooldown, cap, conditions).",
        [(f'{{why="{_escape(k)}"}}', v) for k, v in sorted(s.campaign_suppressed.items())],
    )
    metric("segstream_batches_total", "counter", "Micro-batches processed.", [("", s.batches)])
    # Each batch's own duration: consecutive batches overlap (one finalizes while the next starts), so the sum can
    # grow faster than the clock. Divided by segstream_batches_total it is the mean time a batch takes.
    metric(
        "segstream_batch_seconds_total",
        "counter",
        "Sum of each batch's duration, start to finalize (batches overlap: not busy time).",
        [("", s.batch_seconds)],
    )
    metric(
        "segstream_stage_seconds_total",
        "counter",
        "Time spent per pipeline stage (parse, apply, score, send, deliver, finalize).",
        [(f'{{stage="{_escape(k)}"}}', v) for k, v in sorted(s.stage_seconds.items())],
    )
    gens = range(len(s.gc.collections))
    metric(
        "segstream_gc_collections_total",
        "counter",
        "Python garbage collections per generation (each one pauses the event loop).",
        [(f'{{generation="{g}"}}', s.gc.collections[g]) for g in gens],
    )
    metric(
        "segstream_gc_seconds_total",
        "counter",
        "Time the event loop was paused by garbage collection, per generation.",
        [(f'{{generation="{g}"}}', s.gc.seconds[g]) for g in gens],
    )
    metric("segstream_gc_longest_seconds", "gauge", "The longest single garbage collection.", [("", s.gc.longest_s)])
    metric("segstream_forecast_refreshes_total", "counter", "Forecast refreshes.", [("", s.forecast_refreshes)])
    lag = ctx.lag() or {}
    metric(
        "segstream_consumer_lag",
        "gauge",
        "Messages behind the log end, per partition.",
        [(f'{{partition="{_escape(k)}"}}', v) for k, v in sorted(lag.items())],
    )
    metric(
        "segstream_consumer_lag_total",
        "gauge",
        "Messages behind the log end, all partitions.",
        [("", sum(lag.values()))],
    )
    active = ctx.holder.active
    metric(
        "segstream_model_info",
        "gauge",
        "The active model bundle.",
        [(f'{{version="{_escape(active.version)}"}}', 1)] if active else [],
    )
    metric("segstream_model_swaps_total", "counter", "Hot reloads of the model bundle.", [("", ctx.holder.swaps)])
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _bearer_matches(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Constant-time: the comparison must not tell an attacker how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def build_app(ctx: WebContext) -> web.Application:
    """The aiohttp application with the three read-only routes."""

    async def health(_request: web.Request) -> web.Response:
        problems = []
        try:
            await ctx.store.ping()
        except Exception as exc:  # any failure to reach the store makes the worker unhealthy
            problems.append(f"state store: {type(exc).__name__}: {exc}")
        if ctx.holder.active is None:
            problems.append("no model bundle loaded")
        dl = ctx.stats.dead_letter_status()
        warnings = [f"dead letters: {dl.describe()}"] if dl.alert else []
        body = {
            "status": "unhealthy" if problems else "degraded" if warnings else "ok",
            "problems": problems,
            "warnings": warnings,
            "model_version": ctx.holder.active.version if ctx.holder.active else None,
            "processed": ctx.stats.processed,
            "dead_letters": {
                "alert": dl.alert,
                "share": round(dl.share, 6),
                "threshold": dl.threshold,
                "window_s": dl.window_s,
                "events": dl.events,
                "dead_letters": dl.dead_letters,
                "top_reasons": [{"reason": r, "count": c} for r, c in dl.top_reasons()],
            },
        }
        return web.json_response(body, status=503 if problems else 200)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=metrics_text(ctx), content_type="text/plain", charset="utf-8")

    async def customer(request: web.Request) -> web.Response:
        if ctx.customer_token is not None and not _bearer_matches(request, ctx.customer_token):
            return web.json_response(
                {"error": "a bearer token is required (Authorization: Bearer ...)"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="segstream"'},
            )
        customer_id = request.match_info["customer_id"]
        if not is_valid_customer_id(customer_id):
            return web.json_response({"error": "invalid customer id"}, status=400)
        try:
            doc = await customer_document(ctx.store, customer_id, ctx.holder.active)
        except Exception as exc:  # store unreachable: say so instead of a bare 500
            log.warning("/customers/%s: state store error %s: %s", customer_id, type(exc).__name__, exc)
            return web.json_response({"error": f"state store unavailable ({type(exc).__name__})"}, status=503)
        if doc is None:
            return web.json_response({"error": f"unknown customer {customer_id!r}"}, status=404)
        return web.json_response(doc)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/customers/{customer_id}", customer)
    return app


async def start_web(ctx: WebContext, host: str, port: int) -> web.AppRunner:
    """Start the server; returns the runner (call ``await runner.cleanup()`` to stop)."""
    runner = web.AppRunner(build_app(ctx), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("worker HTTP on http://%s:%d (/health, /metrics, /customers/{id})", host, port)
    return runner
