"""Helpers for the logging integration tests: a private prefix, a config file, the real shipper process.

Every test ships only journal entries it wrote itself (selected by its own
container names or SYSLOG_IDENTIFIER): other suites write to the same journal.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml
from systemd import journal

from asci_logging.assets import load_assets
from asci_logging.installer import Installer

ASCI = str(Path(sys.executable).with_name("asci"))


@dataclass
class LogSite:
    """One private set of pipelines, template and indices in a search engine."""

    prefix: str
    url: str

    def install(self) -> list[dict[str, str]]:
        changes = Installer(self.url, requests.Session(), load_assets(self.prefix)).run()
        return [c.__dict__ for c in changes]

    def remove(self) -> None:
        requests.delete(f"{self.url}/{self.prefix}-*", params={"expand_wildcards": "all"}, timeout=30)
        Installer(self.url, requests.Session(), load_assets(self.prefix)).remove()

    def refresh(self) -> None:
        requests.post(f"{self.url}/{self.prefix}-*/_refresh", timeout=30)

    def count(self, index: str = "*", query: dict[str, Any] | None = None) -> int:
        self.refresh()
        body = {"query": query} if query else None
        resp = requests.post(f"{self.url}/{self.prefix}-{index}/_count", json=body, timeout=30)
        return resp.json().get("count", 0) if resp.ok else 0

    def documents(self, index: str = "*", query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every matching document (with _index and _id), however many: a scroll in index order."""
        self.refresh()
        body = {"size": 5000, "sort": ["_doc"], "query": query or {"match_all": {}}}
        resp = requests.post(f"{self.url}/{self.prefix}-{index}/_search", params={"scroll": "1m"}, json=body, timeout=60)
        resp.raise_for_status()
        page = resp.json()
        hits: list[dict[str, Any]] = []
        while page["hits"]["hits"]:
            hits.extend(page["hits"]["hits"])
            page = requests.post(f"{self.url}/_search/scroll", json={"scroll": "1m", "scroll_id": page["_scroll_id"]},
                                 timeout=60).json()
        requests.delete(f"{self.url}/_search/scroll", json={"scroll_id": page["_scroll_id"]}, timeout=30)
        return hits

    def field_type(self, index: str, field: str) -> str:
        resp = requests.get(f"{self.url}/{self.prefix}-{index}/_mapping/field/{field}", timeout=30).json()
        (mapping,) = {json.dumps(v["mappings"][field]["mapping"]) for v in resp.values() if field in v["mappings"]}
        return next(iter(json.loads(mapping).values()))["type"]


@pytest.fixture
def log_site(stack, unique) -> Iterator[LogSite]:
    site = LogSite(unique("logs"), stack.search_url)
    site.install()
    yield site
    site.remove()


def write_config(tmp_path: Path, prefix: str, select: list[list[str]], url: str | None = None,
                 routes: list[dict[str, Any]] | None = None, **shipper: Any) -> Path:
    logging: dict[str, Any] = {"prefix": prefix, "shipper": {"select": select, "metrics_interval": 1, **shipper}}
    if routes is not None:
        logging["shipper"]["routes"] = routes
    if url:
        logging["url"] = url
    path = tmp_path / "asci.yaml"
    path.write_text(yaml.safe_dump({"stack": {"state_dir": str(tmp_path / "state")}, "logging": logging}))
    return path


def ship_until_idle(config: Path, idle: float = 1.5, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([ASCI, "-c", str(config), "logging", "ship", "--until-idle", str(idle)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def start_shipper(config: Path, log_path: Path) -> subprocess.Popen:
    out = open(log_path, "ab")
    try:
        return subprocess.Popen([ASCI, "-c", str(config), "logging", "ship"], stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


def stop_shipper(proc: subprocess.Popen, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


def metrics(tmp_path: Path) -> dict[str, Any]:
    try:
        return json.loads((tmp_path / "state" / "logging" / "shipper-metrics.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def write_lines(identifier: str, lines: list[str], **fields: str) -> None:
    extra = [f"{k}={v}" for k, v in fields.items()]
    for line in lines:
        journal.sendv(f"MESSAGE={line}", f"SYSLOG_IDENTIFIER={identifier}", "PRIORITY=6", *extra)
    subprocess.run(["journalctl", "--sync"], check=True, timeout=30)


def journal_count(**match: str) -> int:
    reader = journal.Reader()
    try:
        for key, value in match.items():
            reader.add_match(f"{key}={value}")
        reader.seek_head()
        n = 0
        while reader._next():
            n += 1
        return n
    finally:
        reader.close()


def wait_until(condition, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def cursor_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "logging" / "shipper.cursor"
