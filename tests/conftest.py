"""Integration tests run on uvloop, as ``siprec-bridge serve`` does.

uvloop's transports are not subclasses of asyncio's, so code that only ever ran on the default
loop can break in production; the tests marked ``integration`` catch that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
import uvloop


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Any]:
    if item.get_closest_marker("integration") is None:
        return {"asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}
