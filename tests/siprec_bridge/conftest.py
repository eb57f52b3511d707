"""Fixtures of the bridge's end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from siprec_bridge.consumer import ConsumerServer


@pytest.fixture
async def consumer(tmp_path: Path) -> AsyncIterator[ConsumerServer]:
    """The demo consumer on 127.0.0.1 (ephemeral port), writing under ``tmp_path``."""
    server = ConsumerServer("127.0.0.1", 0, tmp_path / "consumer")
    await server.start()
    yield server
    await server.close()
