"""Log formats: readable text by default, JSON lines on request, the call id as a field."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from gateway.config import LoggingConfig
from gateway.ops.logging_setup import JsonFormatter, configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("aioice", "aiortc", "aiohttp.access")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def test_json_lines_carry_the_call_id_and_the_exception() -> None:
    record = logging.LogRecord("gateway.session.registry", logging.INFO, __file__, 1, "call %s: ended (%s)",
                               ("rtc_0123abcd", "hangup"), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["call_id"] == "rtc_0123abcd"
    assert entry["message"] == "call rtc_0123abcd: ended (hangup)"
    assert (entry["level"], entry["logger"]) == ("INFO", "gateway.session.registry")
    assert entry["time"].endswith("Z")
    try:
        raise ValueError("bad")
    except ValueError:
        failed = logging.LogRecord("gateway", logging.ERROR, __file__, 1, "engines failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(failed))
    assert "call_id" not in entry and "ValueError: bad" in entry["exc"]


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_configure_logging_sets_the_format_and_quiets_chatty_libraries(fmt: str) -> None:
    stream = io.StringIO()
    configure_logging(LoggingConfig(format=fmt, level="info"), stream)
    logging.getLogger("gateway.session.session").info("call %s: closing (%s)", "rtc_42", "hangup")
    logging.getLogger("gateway.session.session").debug("not shown")
    logging.getLogger("aioice.ice").info("candidate noise")
    [line] = stream.getvalue().splitlines()
    if fmt == "json":
        assert json.loads(line)["call_id"] == "rtc_42"
    else:
        assert line.endswith("INFO gateway.session.session: call rtc_42: closing (hangup)")
