"""Integration tests run on uvloop, as ``siprec-bridge serve`` does.

uvloop's transports are not subclasses of asyncio's, so code that only ever ran on the default
loop can break in production; the ``integration`` tests catch that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvloop

from siprec_bridge.consumer import ConsumerServer


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Any]:
    if item.get_closest_marker("integration") is None:
        return {"asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
async def consumer(tmp_path: Path) -> AsyncIterator[ConsumerServer]:
    """The demo consumer on 127.0.0.1 (ephemeral port), writing under ``tmp_path``."""
    server = ConsumerServer("127.0.0.1", 0, tmp_path / "consumer")
    await server.start()
    yield server
    await server.close()
