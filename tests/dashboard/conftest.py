"""Fixtures shared by the dashboard's server and browser tests: one daemon home with its
apps and one dashboard per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Corral
from tests.dashboard.helpers import Dashboard, start_home


@pytest.fixture(scope="module")
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    c = start_home(tmp_path_factory.mktemp(f"dash-{module}"))
    try:
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def dash(home: Corral) -> Iterator[Dashboard]:
    d = Dashboard(home).start()
    try:
        yield d
    finally:
        d.stop()
