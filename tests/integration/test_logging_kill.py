"""The shipper killed with SIGKILL in the middle of a `_bulk` request, then restarted: nothing lost, nothing twice."""
from __future__ import annotations

import collections
import signal
import time

import requests

from tests.integration.logging_support import (cursor_file, log_site, ship_until_idle,  # noqa: F401 (fixture)
                                                    start_shipper, write_config, write_lines)

LINES = 20_000
BATCH = 4_000


def test_sigkill_mid_batch_then_restart_loses_and_doubles_nothing(tmp_path, stack, unique, log_site):
    ident = unique("kill")
    expected = [f"kill-line {i:05d} {ident}" for i in range(LINES)]
    write_lines(ident, expected)
    config = write_config(tmp_path, log_site.prefix, [[f"SYSLOG_IDENTIFIER={ident}"]], routes=[],
                          batch_size=BATCH, batches_in_flight=1)

    proc = start_shipper(config, tmp_path / "shipper-1.log")
    # Kill while a request is half-applied: the visible count is then not a whole number of batches,
    # so the engine holds documents whose batch the shipper never saw acknowledged.
    seen_mid_batch = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            n = log_site.count("default-*")
            if 0 < n < LINES and n % BATCH:
                seen_mid_batch = True
                break
            if n >= LINES - BATCH:
                break  # too late to catch a request in flight: kill anyway, the counts must still hold
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    indexed_at_kill = log_site.count("default-*")
    assert indexed_at_kill < LINES, "the shipper finished before it could be killed; the test proved nothing"
    saved = cursor_file(tmp_path).read_text() if cursor_file(tmp_path).exists() else None

    ship_until_idle(config, idle=1.5)

    assert log_site.count("deadletter-*") == 0
    hits = log_site.documents("default-*")
    messages = collections.Counter(h["_source"]["message"] for h in hits)
    ids = collections.Counter(h["_id"] for h in hits)
    assert len(hits) == LINES
    assert len(ids) == LINES, [i for i, c in ids.items() if c > 1][:5]
    assert set(messages) == set(expected), sorted(set(expected) - set(messages))[:5]
    assert max(messages.values()) == 1, [m for m, c in messages.items() if c > 1][:5]
    assert cursor_file(tmp_path).read_text() != saved
    if seen_mid_batch:
        # The restart re-sent what the killed process had sent unacknowledged: ids made those overwrites.
        stats = requests.get(f"{log_site.url}/{log_site.prefix}-*/_stats/indexing", timeout=30).json()
        assert stats["_all"]["primaries"]["indexing"]["index_total"] > LINES
