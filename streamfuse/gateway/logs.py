"""Structured (one JSON object per line) log records for the gateway daemon.

``streamfuse --log-level INFO gateway --log-format json`` switches the root handler to
:class:`JsonFormatter`; each line carries ``ts`` (UTC ISO 8601), ``level``, ``logger``,
``msg`` (the %-formatted message), the raw ``args`` when they are plain values, and
``exc`` for exceptions, so log shippers need no regular expressions.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

_PLAIN = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if isinstance(record.args, tuple) and record.args:
            entry["args"] = [a if isinstance(a, _PLAIN) else repr(a) for a in record.args]
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def use_json_logs() -> None:
    """Give every handler of the root logger the JSON formatter."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
