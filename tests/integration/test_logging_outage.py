"""The search engine stopped for 30 s while 10,000 lines are written: all arrive once it is back, none twice.

Uses a search-engine instance of its own (own state dir and ports): the session's
engine is shared with other suites and must never be stopped.
"""
from __future__ import annotations

import collections
import os
import signal
import time
from pathlib import Path

import pytest
import requests
import yaml

from asci_core.config import parse_config
from asci_core.stack.manager import StackManager
from asci_core.stack.search_engine import SearchEnginePart
from tests.conftest import free_port
from tests.integration.logging_support import (LogSite, cursor_file, metrics, start_shipper, stop_shipper,
                                                    wait_until, write_config, write_lines)

OUTAGE_S = 30
LINES = 10_000
WARMUP = 100
BATCH = 500
IN_FLIGHT = 2
SENDERS = 2


def own_engine(tmp_path: Path) -> tuple[StackManager, str]:
    url = f"http://127.0.0.1:{free_port()}"
    config = parse_config(yaml.safe_dump({"stack": {
        "state_dir": str(tmp_path / "engine"),
        "search": {"url": url, "transport_port": free_port(), "heap_mb": 512},
    }}))
    return StackManager(config, parts=[SearchEnginePart(config)]), url


def rss_mib(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return 0.0


def test_engine_away_for_30_s_loses_and_doubles_nothing(tmp_path, stack, unique):
    manager, url = own_engine(tmp_path)
    report = manager.up()
    assert report.ok, [p.detail for p in report.parts]
    proc = None
    try:
        site = LogSite(unique("logs"), url)
        site.install()
        ident = unique("outage")
        config = write_config(tmp_path, site.prefix, [[f"SYSLOG_IDENTIFIER={ident}"]], url=url, routes=[],
                              batch_size=BATCH, batches_in_flight=IN_FLIGHT, senders=SENDERS, retry_initial=0.2, retry_max=2.0,
                              request_timeout=10)
        proc = start_shipper(config, tmp_path / "shipper.log")
        warmup = [f"warm-up {i:03d} {ident}" for i in range(WARMUP)]
        write_lines(ident, warmup)
        wait_until(lambda: site.count("default-*") == WARMUP, 60, what="the warm-up lines")

        down = manager.down()
        assert [p.action for p in down.parts] == ["stopped"]
        stopped_at = time.monotonic()
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)
        lines = [f"outage-line {i:05d} {ident}" for i in range(LINES)]
        write_lines(ident, lines)
        wait_until(lambda: metrics(tmp_path).get("state") == "retrying", 20, what="the shipper to notice")
        peak_rss = 0.0
        while time.monotonic() - stopped_at < OUTAGE_S:
            peak_rss = max(peak_rss, rss_mib(proc.pid))
            time.sleep(1)
        during = metrics(tmp_path)
        assert proc.poll() is None, "the shipper died while the engine was away"
        assert during["events_sent"] == WARMUP and during["cursor"]
        # Reading paused instead of buffering the whole outage in memory.
        bound = (IN_FLIGHT + SENDERS + 1) * BATCH
        assert during["max_buffered"] <= bound and during["entries_read"] <= WARMUP + bound, during
        assert during["lag_seconds"] > 0 and during["bulk_failures"] > 0

        up = manager.up()
        assert up.ok and [p.action for p in up.parts] == ["started"]
        wait_until(lambda: site.count("default-*") >= WARMUP + LINES, 120, interval=1,
                   what="every line after the outage")
        assert stop_shipper(proc) == 0
        proc = None

        assert site.count("deadletter-*") == 0  # a node that is still loading its pipelines rejects nothing
        hits = site.documents("default-*")
        messages = collections.Counter(h["_source"]["message"] for h in hits)
        assert len(hits) == WARMUP + LINES
        assert len({h["_id"] for h in hits}) == WARMUP + LINES
        assert set(messages) == set(warmup) | set(lines) and max(messages.values()) == 1
        after = metrics(tmp_path)
        assert after["events_sent"] == WARMUP + LINES and after["events_failed"] == 0
        assert after["state"] == "stopped" and after["lag_seconds"] == 0.0
        assert cursor_file(tmp_path).read_text().strip() == after["cursor"]
        assert peak_rss < 150, f"shipper RSS {peak_rss:.0f} MiB while the engine was away"
    finally:
        if proc is not None:
            stop_shipper(proc)
        manager.down()


def test_engine_crash_and_slow_recovery_dead_letter_nothing(tmp_path, stack, unique):
    """SIGKILL the node while the shipper runs: `stack up` reports it started only once its cluster state is
    recovered, and the shipper holds what the recovering node calls "pipeline does not exist" instead of
    dead-lettering it, although its grace for missing pipelines is 3 s."""
    manager, url = own_engine(tmp_path)
    report = manager.up()
    assert report.ok, [p.detail for p in report.parts]
    proc = None
    try:
        site = LogSite(unique("logs"), url)
        site.install()
        ident = unique("crash")
        config = write_config(tmp_path, site.prefix, [[f"SYSLOG_IDENTIFIER={ident}"]], url=url, routes=[],
                              retry_initial=0.2, retry_max=1.0, missing_pipeline_grace=3.0, request_timeout=10)
        proc = start_shipper(config, tmp_path / "shipper.log")
        before = [f"before {i:03d} {ident}" for i in range(20)]
        write_lines(ident, before)
        wait_until(lambda: site.count("default-*") == len(before), 60, what="the lines before the crash")

        engine = manager.state.load()["search"].identity
        os.kill(engine.pid, signal.SIGKILL)
        wait_until(lambda: not engine.alive(), 30, what="the engine to die")
        after = [f"after {i:03d} {ident}" for i in range(300)]
        write_lines(ident, after)

        up = manager.up()
        assert up.ok and [p.action for p in up.parts] == ["started"]
        # "Started" means usable: the cluster state is recovered and the installed pipelines are there.
        health = requests.get(f"{url}/_cluster/health", timeout=10).json()
        assert health["status"] in ("yellow", "green"), health
        assert requests.get(f"{url}/_ingest/pipeline/{site.prefix}-default", timeout=10).status_code == 200

        wait_until(lambda: site.count("default-*") >= len(before) + len(after), 120, interval=1,
                   what="every line after the crash")
        assert stop_shipper(proc) == 0
        proc = None
        assert site.count("deadletter-*") == 0
        hits = site.documents("default-*")
        assert sorted(h["_source"]["message"] for h in hits) == sorted(before + after)
        assert metrics(tmp_path)["events_failed"] == 0
    finally:
        if proc is not None:
            stop_shipper(proc)
        manager.down()
