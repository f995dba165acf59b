"""Lines that once cost more than themselves, through the real journal, shipper and engine.

- a timestamp that does not parse lost the line's level;
- colour codes around the level word hid it;
- one JSON line with 1,500 keys spent the day's field budget, so later lines were dead-lettered;
- `lag_seconds` read null while the lag grew (shipper restarted while the engine was away).
"""
from __future__ import annotations

import json
import time
from typing import Any

import requests

from tests.conftest import free_port
from tests.integration.logging_support import (log_site, metrics, ship_until_idle,  # noqa: F401 (fixture)
                                                    start_shipper, stop_shipper, wait_until, write_config,
                                                    write_lines)

ESC = "\x1b"


def mapped_fields(site, index: str) -> int:
    """Fields in the index's mapping as the engine counts them against its limit (objects included)."""
    def count(properties: dict[str, Any]) -> int:
        return sum(1 + count(spec.get("properties", {})) for spec in properties.values())

    answer = requests.get(f"{site.url}/{site.prefix}-{index}/_mapping", timeout=30).json()
    return max(count(m["mappings"].get("properties", {})) for m in answer.values())


def test_bad_timestamps_colour_and_wide_lines_lose_nothing(tmp_path, stack, unique, log_site):
    ident = unique("hostile")
    config = write_config(tmp_path, log_site.prefix, [[f"SYSLOG_IDENTIFIER={ident}"]],
                          routes=[{"pipeline": "asci-core", "identifier": f"^{ident}$"}])
    first = [json.dumps({"timestamp": "2026-11-26T05:00:00Z", "level": "info", "message": f"first {i}",
                         "phase": "start"}) for i in range(3)]
    write_lines(ident, first)
    ship_until_idle(config)
    before = mapped_fields(log_site, "asci-core-*")

    wide = [json.dumps({"timestamp": "2026-11-26T05:01:00Z", "level": "warning", "message": f"wide {n}",
                        **{f"w{n}_{i:04d}": i for i in range(1500)}}) for n in range(3)]
    bad_time = json.dumps({"timestamp": "half past five", "level": "error", "message": "bad time"})
    coloured = f"{ESC}[31mERROR{ESC}[0m colour around the level"
    ordinary = [json.dumps({"timestamp": "2026-11-26T05:02:00Z", "level": "info", "message": f"ordinary {i}",
                            f"later_field_{i}": i}) for i in range(20)]
    write_lines(ident, [*wide, bad_time, coloured, *ordinary])
    ship_until_idle(config)

    m = metrics(tmp_path)
    assert m["events_sent"] == 3 + 2 + 20 and m["events_failed"] == 0, m
    assert log_site.count("deadletter-*") == 0
    docs = {h["_source"]["message"]: h["_source"] for h in log_site.documents("asci-core-*")}
    assert {f"ordinary {i}" for i in range(20)} <= set(docs)
    assert all(docs[f"ordinary {i}"]["asci"]["fields"] == {f"later_field_{i}": i} for i in range(20))
    for n in range(3):
        capped = docs[f"wide {n}"]
        assert "asci_fields_capped" in capped["tags"] and capped["log"]["level"] == "warning"
        assert len(json.loads(capped["event"]["original"])) == 1503
    # Three lines of 1,500 keys each added at most their cap: the index's budget of 2,000 is intact.
    grown = mapped_fields(log_site, "asci-core-*") - before
    assert grown <= 3 * 64 + 20 + 5, grown

    late = docs["bad time"]
    assert late["log"]["level"] == "error" and late["asci"]["unparsed_timestamp"] == "half past five"
    assert "asci_parse_failure" in late["tags"]
    red = docs["ERROR colour around the level"]
    assert red["log"]["level"] == "error" and red["event"]["original"] == coloured
    # The level is searchable as such, not just stored.
    assert log_site.count("asci-core-*", {"term": {"log.level": "error"}}) == 2


def test_lag_grows_while_a_restarted_shipper_waits_for_the_engine(tmp_path, stack, unique, log_site):
    ident = unique("lag")
    select = [[f"SYSLOG_IDENTIFIER={ident}"]]
    write_lines(ident, ["before 1", "before 2"])
    ship_until_idle(write_config(tmp_path, log_site.prefix, select))
    assert metrics(tmp_path)["lag_seconds"] == 0.0

    written = time.time()
    write_lines(ident, [f"during {i}" for i in range(5)])
    # The same state (cursor) but an engine that is not there: nothing will be acknowledged.
    away = write_config(tmp_path, log_site.prefix, select, url=f"http://127.0.0.1:{free_port()}",
                        retry_initial=0.2, retry_max=1.0, shutdown_timeout=1)
    proc = start_shipper(away, tmp_path / "shipper.log")
    try:
        wait_until(lambda: metrics(tmp_path).get("state") == "retrying"
                   and metrics(tmp_path).get("lag_seconds") is not None, 30, what="a retrying shipper with a lag")
        first = metrics(tmp_path)
        assert first["events_sent"] == 0 and first["lag_seconds"] > 0
        wait_until(lambda: (metrics(tmp_path).get("lag_seconds") or 0) >= first["lag_seconds"] + 2, 30,
                   what="the lag to grow")
        # It is the age of the oldest unsent line.
        now = metrics(tmp_path)
        assert abs(now["lag_seconds"] - (time.time() - written)) < 3, now
    finally:
        stop_shipper(proc)
    ship_until_idle(write_config(tmp_path, log_site.prefix, select))
    assert metrics(tmp_path)["lag_seconds"] == 0.0 and metrics(tmp_path)["events_sent"] == 5
    assert log_site.count() == 7
