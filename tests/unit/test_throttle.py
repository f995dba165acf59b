"""The shared throttle primitives (asci_core.throttle) on a clock the test moves."""
from __future__ import annotations

import pytest

from asci_core.throttle import BoundedTable, FailureBackoff, TokenBuckets, digest
from tests.support.clock import FakeClock


def test_a_table_drops_the_least_recently_written_past_its_limit():
    table: BoundedTable[str, int] = BoundedTable(3)
    for key in "abc":
        table.put(key, 1)
    table.put("a", 2)  # written again: now the newest
    table.put("d", 1)
    assert list(table) == ["c", "a", "d"] and table.get("b") is None and table.get("a") == 2
    table.pop("c")
    table.pop("c")  # popping what is gone is no mistake
    assert len(table) == 2


def test_a_table_drops_idle_rows_before_old_ones():
    table: BoundedTable[str, int] = BoundedTable(3, idle=lambda v: v == 0)
    for key, value in (("old", 5), ("idle1", 0), ("idle2", 0), ("new", 5)):
        table.put(key, value)
    assert list(table) == ["old", "new"]  # both idle rows went, the oldest busy one stayed


def test_buckets_refill_at_their_rate_up_to_the_burst():
    clock = FakeClock()
    buckets = TokenBuckets(2, 0.25, clock=clock)
    assert [buckets.take("k") for _ in range(3)] == [True, True, False]
    assert buckets.empty("k") and buckets.retry_after("k") == 4
    clock.now += 100  # long idle: still only the burst
    assert [buckets.take("k") for _ in range(3)] == [True, True, False]
    assert not buckets.empty("other")


def test_buckets_past_their_key_limit_drop_full_ones_before_old_busy_ones():
    clock = FakeClock()
    buckets = TokenBuckets(2, 0.1, max_keys=3, clock=clock)
    assert buckets.take("busy") and buckets.take("busy")  # full again only after 20 s
    for name in ("quiet1", "quiet2"):
        clock.now += 1
        buckets.take(name)  # full again after 10 s
    clock.now += 15
    buckets.take("new")
    # The oldest key stays: forgetting it would hand it a fresh burst; the full ones tell nothing.
    assert list(buckets._state) == ["busy", "new"]
    assert len(buckets._state) <= 3


def test_backoff_blocks_past_the_free_failures_doubling_to_the_ceiling():
    clock = FakeClock()
    backoff = FailureBackoff(free=2, first_delay=1.0, max_delay=5.0, forget_after=100.0, clock=clock)
    blocks = []
    for _ in range(6):
        backoff.failed("k")
        blocks.append(backoff.blocked_for("k"))
    assert blocks == [0, 0, 1, 2, 4, 5]
    assert backoff.failures("k") == 6 and backoff.blocked_for("other") == 0
    clock.now += 3
    assert backoff.blocked_for("k") == pytest.approx(2.0)
    clock.now += 2
    assert backoff.blocked_for("k") == 0  # a block ends: it never becomes permanent


def test_backoff_forgets_a_quiet_key_and_on_request():
    clock = FakeClock()
    backoff = FailureBackoff(free=0, first_delay=1.0, max_delay=60.0, forget_after=10.0, clock=clock)
    for _ in range(3):
        backoff.failed("k")
    clock.now += 10
    assert backoff.failures("k") == 3  # quiet for exactly FORGET_AFTER: still remembered
    clock.now += 0.5
    assert backoff.failures("k") == 0 and backoff.blocked_for("k") == 0
    backoff.failed("k")
    assert backoff.blocked_for("k") == 1.0  # counted afresh, not a fourth failure
    backoff.forget("k")
    assert backoff.failures("k") == 0 and backoff.blocked_for("k") == 0


def test_backoff_keeps_digests_within_its_key_limit():
    backoff = FailureBackoff(free=1, first_delay=1.0, max_delay=2.0, forget_after=60.0, max_keys=10, clock=FakeClock())
    for i in range(100):
        backoff.failed("x" * 60000 + str(i))
    assert len(backoff.rows) == 10 and all(len(k) == 32 for k in backoff.rows)
    assert backoff.failures("x" * 60000 + "99") == 1 and backoff.failures("x" * 60000 + "0") == 0
    assert digest("a") != digest("b") and len(digest("\udcff")) == 32  # lone surrogates from a form are keys too
