"""One log format for every ASCI component: a JSON object per line.

{"timestamp": ..., "level": ..., "component": ..., "message": ..., <fields>}

The ingest pipelines for autobuild and asci_core parse exactly this shape, so
keep the four fixed keys stable. Fields are passed with `extra={"fields": {...}}`
or through `get_logger(component).info(msg, key=value)`.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any, TextIO

from asci_core.config_base import Secret

_RESERVED = ("timestamp", "level", "component", "message")


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return "***"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": getattr(record, "component", None) or record.name.split(".")[0],
            "message": record.getMessage(),
        }
        for key, value in (getattr(record, "fields", None) or {}).items():
            entry[key if key not in _RESERVED else f"field_{key}"] = _plain(value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


class ComponentLogger:
    """Thin wrapper so call sites read `log.info("pushed", digest=d)`."""

    def __init__(self, component: str):
        self.component = component
        self._logger = logging.getLogger(f"asci.{component}")

    def _log(self, level: int, message: str, /, exc_info: Any = None, **fields: Any) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, message, exc_info=exc_info,
                             extra={"component": self.component, "fields": fields})

    def debug(self, message: str, /, **fields: Any) -> None:
        self._log(logging.DEBUG, message, **fields)

    def info(self, message: str, /, **fields: Any) -> None:
        self._log(logging.INFO, message, **fields)

    def warning(self, message: str, /, **fields: Any) -> None:
        self._log(logging.WARNING, message, **fields)

    def error(self, message: str, /, exc_info: Any = None, **fields: Any) -> None:
        self._log(logging.ERROR, message, exc_info=exc_info, **fields)


def get_logger(component: str) -> ComponentLogger:
    return ComponentLogger(component)


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Route every logger (ours and libraries') through the JSON formatter."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter below WARNING is noise in our logs.
    for noisy in ("urllib3", "docker", "git", "elasticsearch", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
