from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest

from sluice.sim import SimApp, SimSettings, sim_server

from .helpers import Sim, start


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    """A simulator with default settings, served by uvicorn on a free loopback port."""
    server = sim_server("127.0.0.1", 0, SimSettings(), graceful_seconds=1)
    task, base_url = await start(server)
    yield Sim(base_url=base_url, app=cast(SimApp, server.config.app))
    server.should_exit = True
    await task
