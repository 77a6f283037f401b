"""Process-level choices of the worker: uvloop for every thread's loop, and no faust spinner."""

from __future__ import annotations

import asyncio
import logging

import pytest

from segstream.streams.app import quiet_worker, use_uvloop


def test_uvloop_is_the_policy_so_loops_made_in_other_threads_are_uvloop_too():
    uvloop = pytest.importorskip("uvloop")
    before = asyncio.get_event_loop_policy()
    try:
        assert use_uvloop() == "uvloop"
        fresh = asyncio.new_event_loop()  # what faust's consumer thread does
        try:
            assert isinstance(fresh, uvloop.Loop)
        finally:
            fresh.close()
    finally:
        asyncio.get_event_loop().close()
        asyncio.set_event_loop_policy(before)


def test_quiet_worker_keeps_the_root_logger_at_the_chosen_level():
    import faust
    from faust.worker import Worker

    app = faust.App("quiet-test", broker="kafka://127.0.0.1:1", web_enabled=False, autodiscover=False)
    loop = asyncio.new_event_loop()
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    try:
        root.handlers = [logging.StreamHandler()]
        noisy = Worker(app, loglevel="warning", loop=loop, redirect_stdouts=False)
        noisy.on_setup_root_logger(root, logging.WARNING)
        assert root.level == logging.DEBUG  # what faust's spinner does on its own

        root.setLevel(logging.WARNING)
        root.handlers = [logging.StreamHandler()]
        quiet = quiet_worker(Worker(app, loglevel="warning", loop=loop, redirect_stdouts=False))
        quiet.on_setup_root_logger(root, logging.WARNING)
        assert root.level == logging.WARNING
        assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved_level)
        root.handlers = saved_handlers
        loop.close()
