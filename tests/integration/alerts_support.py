"""Helpers for the alerts tests: lines written the way components write them, shipped for real, and ElastAlert.

Each test has its own log prefix (indices, pipelines), its own ElastAlert writeback index and
its own Slack receiver, so tests never see each other's documents, silences or posts.
"""
from __future__ import annotations

import datetime as dt
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from systemd import journal

from alerts.elastalert_driver import Passes
from alerts.writeback import remove_writeback
from asci_core.config import Config, load_config
from asci_core.jsonlog import JsonFormatter
from asci_logging.search_client import SearchAccess
from tests.integration.autobuild_support import SlackReceiver
from tests.integration.logging_support import LogSite, ship_until_idle

_FORMAT = JsonFormatter()
PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3}


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def jsonlog_line(component: str, level: str, message: str, at: dt.datetime | None = None, **fields: Any) -> str:
    """The exact line asci_core.jsonlog writes for log.<level>(message, **fields) at time AT."""
    record = logging.LogRecord(f"asci.{component}", getattr(logging, level.upper()), __file__, 0, message, None, None)
    if at is not None:
        record.created = at.timestamp()
    record.component = component
    record.fields = fields
    return _FORMAT.format(record)


def access_line(ip: str, status: int, path: str, at: dt.datetime, user: str = "-", method: str = "GET") -> str:
    """A combined-format access line as the proxy writes it."""
    stamp = at.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{ip} - {user} [{stamp}] "{method} {path} HTTP/1.1" {status} 12 "-" "curl/7.88.1"'


@dataclass
class AlertSite:
    """One test's log prefix, ElastAlert state and Slack receiver."""

    tmp_path: Path
    logs: LogSite
    writeback: str
    container: str          # every line this test writes carries this CONTAINER_NAME
    receiver: SlackReceiver
    written: int = 0
    config_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config_path = self.tmp_path / "asci.yaml"

    def configure(self, rules: list[str], overrides: list[dict[str, Any]] | None = None,
                  **alerts: Any) -> Config:
        data = {
            "stack": {"state_dir": str(self.tmp_path / "state")},
            "logging": {"prefix": self.logs.prefix,
                        "shipper": {"select": [[f"CONTAINER_NAME={self.container}"]], "metrics_interval": 1}},
            "alerts": {"slack_webhook_url": self.receiver.url, "writeback_index": self.writeback, "rules": rules,
                       "overrides": overrides or [], "workdir": str(self.tmp_path / "alerts"), **alerts},
        }
        self.config_path.write_text(yaml.safe_dump(data))
        return load_config(self.config_path)

    def emit(self, component: str, lines: list[str], level: str = "info") -> None:
        """Journal entries as Docker's journald driver writes a container's lines (fields the shipper routes on)."""
        for line in lines:
            journal.sendv(f"MESSAGE={line}", f"SYSLOG_IDENTIFIER=asci/{component}/{self.container}",
                          f"CONTAINER_NAME={self.container}", f"ASCI_COMPONENT={component}",
                          f"PRIORITY={PRIORITY[level]}", "IMAGE_NAME=asci/tiny:latest")
        self.written += len(lines)
        subprocess.run(["journalctl", "--sync"], check=True, timeout=30)

    def ship(self) -> None:
        ship_until_idle(self.config_path, idle=0.5)
        self.logs.refresh()
        assert self.logs.count() == self.written, "every line written reached the engine"

    def passes(self, config: Config, start: dt.datetime | None = None) -> Passes:
        return Passes.open(config, start=start)


@pytest.fixture
def alert_site(stack, unique, tmp_path) -> Iterator[AlertSite]:
    logs = LogSite(unique("logs"), stack.search_url)
    logs.install()
    receiver = SlackReceiver()
    site = AlertSite(tmp_path, logs, unique("ea"), unique("c"), receiver)
    yield site
    receiver.close()
    logs.remove()
    remove_writeback(SearchAccess(stack.search_url), site.writeback)


def texts(receiver: SlackReceiver) -> list[tuple[str, str]]:
    """(title, text) of every attachment posted so far."""
    return [(a["title"], a["text"]) for m in receiver.messages for a in m["attachments"]]

