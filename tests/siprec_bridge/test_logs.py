"""Structured logs: call id and session id on every line of a call, JSON and text formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from siprec_bridge.logs import CallLogger, call_context, setup_logging

log = logging.getLogger("siprec_bridge.test")


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_root")
def test_json_lines_carry_the_ids_inside_a_call_only() -> None:
    stream = io.StringIO()
    setup_logging("json", "info", stream)
    log.info("before")
    with call_context("c-1@sbc", "s-1"):
        log.info("answered %d", 200, extra={"status": 200})
        with call_context("c-2@sbc", "s-2"):
            log.warning("nested")
        log.debug("hidden below the level")
        log.info("back")
    log.info("after")
    lines = json_lines(stream)
    assert [(line["msg"], line.get("call_id"), line.get("session_id")) for line in lines] == [
        ("before", None, None),
        ("answered 200", "c-1@sbc", "s-1"),
        ("nested", "c-2@sbc", "s-2"),
        ("back", "c-1@sbc", "s-1"),
        ("after", None, None),
    ]
    assert lines[1]["status"] == 200 and lines[1]["level"] == "info"
    assert lines[1]["logger"] == "siprec_bridge.test" and lines[1]["ts"].endswith("Z")


@pytest.mark.usefixtures("restore_root")
async def test_tasks_started_inside_a_call_keep_its_ids() -> None:
    stream = io.StringIO()
    setup_logging("json", "info", stream)

    async def work() -> None:
        await asyncio.sleep(0)
        log.info("from the task")

    with call_context("c-task", "s-task"):
        task = asyncio.get_running_loop().create_task(work())
    log.info("outside")
    await task
    by_msg = {line["msg"]: line for line in json_lines(stream)}
    assert by_msg["from the task"]["call_id"] == "c-task"
    assert "call_id" not in by_msg["outside"]


@pytest.mark.usefixtures("restore_root")
def test_call_logger_and_explicit_extra_win() -> None:
    stream = io.StringIO()
    setup_logging("json", "info", stream)
    bound = CallLogger(log, "c-bound", "s-bound")
    with call_context("c-ctx", "s-ctx"):
        bound.info("bound")
        log.info("explicit", extra={"call_id": "c-explicit"})
    lines = json_lines(stream)
    assert (lines[0]["call_id"], lines[0]["session_id"]) == ("c-bound", "s-bound")
    assert (lines[1]["call_id"], lines[1]["session_id"]) == ("c-explicit", "s-ctx")


@pytest.mark.usefixtures("restore_root")
def test_text_format_and_exceptions() -> None:
    stream = io.StringIO()
    setup_logging("text", "debug", stream)
    log.debug("plain")
    with call_context("c-9", None):
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(" DEBUG siprec_bridge.test plain")
    assert lines[1].endswith(" ERROR siprec_bridge.test [call=c-9 session=-] failed")
    assert lines[-1] == "ValueError: boom"
    stream = io.StringIO()
    setup_logging("json", "info", stream)
    try:
        raise KeyError("k")
    except KeyError:
        log.exception("json failure")
    (line,) = json_lines(stream)
    assert "KeyError: 'k'" in line["exc"]
