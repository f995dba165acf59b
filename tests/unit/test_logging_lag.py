"""The shipper's lag: the age of the oldest journal entry read but not yet accepted by the engine."""
from __future__ import annotations

from asci_logging.metrics import Backlog, lag_seconds

S = 1_000_000  # microseconds


def test_lag_is_the_age_of_the_oldest_unaccepted_entry_and_grows_with_the_clock():
    backlog = Backlog()
    backlog.handed_off(0, 100 * S)
    backlog.handed_off(1, 105 * S)
    # A restarted shipper whose engine is away: nothing acknowledged yet, and still a number.
    assert lag_seconds(130 * S, backlog.oldest_us(), caught_up=False, fallback=None) == 30.0
    assert lag_seconds(190 * S, backlog.oldest_us(), caught_up=False, fallback=None) == 90.0
    # Out-of-order acceptance: batch 1 first; batch 0 is still the oldest unaccepted.
    backlog.accepted(1)
    assert backlog.oldest_us() == 100 * S
    backlog.accepted(0)
    assert backlog.oldest_us() is None


def test_the_batch_being_filled_counts_too():
    backlog = Backlog()
    assert backlog.oldest_us(filling_first_us=50 * S) == 50 * S
    backlog.handed_off(3, 40 * S)
    assert backlog.oldest_us(filling_first_us=50 * S) == 40 * S
    backlog.handed_off(4, None)  # a batch of no entries has nothing to wait for
    backlog.accepted(3)
    assert backlog.oldest_us() is None


def test_nothing_pending():
    assert lag_seconds(10 * S, None, caught_up=True, fallback=3.0) == 0.0
    assert lag_seconds(10 * S, None, caught_up=False, fallback=3.0) == 3.0
    # A journal clock slightly ahead of ours is no negative lag.
    assert lag_seconds(10 * S, 11 * S, caught_up=False, fallback=None) == 0.0
