"""Log handlers, configured once in ``main``: readable text (default) or JSON lines.

Modules only ``logging.getLogger(__name__)`` and write ``"call %s: ..."`` lines;
the JSON formatter lifts that call id into its own ``call_id`` field.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

from gateway.config import LoggingConfig
from gateway.protocol.server_events import CALL_ID_PREFIX

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CALL_ID = re.compile(rf"call ({CALL_ID_PREFIX}_[0-9a-f]+)\b")

#: Libraries whose INFO lines are noise in a gateway's log (one per ICE candidate, ...).
QUIET_LOGGERS = ("aioice", "aiortc", "aiohttp.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, ``call_id`` (if any), ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        call_id = getattr(record, "call_id", None)
        if call_id is None:
            match = _CALL_ID.search(message)
            call_id = match.group(1) if match else None
        if call_id is not None:
            entry["call_id"] = call_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(config: LoggingConfig, stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers with one writing to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = config.level.upper()
    root.setLevel(level)
    if level != "DEBUG":
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
