"""The health book: down nodes, their reason, and when the background prober tries them again."""
from __future__ import annotations

from asci_core.launcher.node_health import HealthBook


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_down_node_is_retried_with_doubling_back_off_up_to_the_maximum():
    clock = Clock()
    book = HealthBook(base=1.0, maximum=5.0, clock=clock)
    assert book.mark_down("n1", "timed out") is True
    assert book.down() == {"n1": "timed out"} and book.is_down("n1")
    assert book.claim_due() == [] and book.next_due_in() == 1.0
    waits = []
    for _ in range(5):
        clock.now += book.next_due_in()
        assert book.claim_due() == ["n1"]
        assert book.claim_due() == []  # handed out once until its outcome is known
        assert book.next_due_in() is None
        assert book.mark_down("n1", "timed out") is False
        assert book.next_due_in() is None  # the retry in flight schedules the next one when it ends
        book.finish_probe("n1")
        waits.append(book.next_due_in())
    assert waits == [2.0, 4.0, 5.0, 5.0, 5.0]


def test_an_answer_brings_a_node_back_at_once():
    book = HealthBook(clock=Clock())
    book.mark_down("n1", "timed out")
    assert book.mark_up("n1") is True and book.down() == {} and book.mark_up("n1") is False
    # Down again later: the back-off starts over.
    book.mark_down("n1", "connection refused")
    assert book.next_due_in() == 1.0


def test_the_reason_given_to_requests_says_when_the_node_is_tried_again():
    clock = Clock()
    book = HealthBook(base=4.0, clock=clock)
    book.mark_down("n1", "did not answer within 2 s")
    assert book.describe("n1") == "did not answer within 2 s; retried in the background, next try in 4 s"
    clock.now += 4
    book.claim_due()
    assert book.describe("n1").endswith("being retried now")
    assert book.describe("n2") == ""


def test_other_failures_while_a_retry_is_in_flight_do_not_start_another_one():
    clock = Clock()
    book = HealthBook(base=1.0, clock=clock)
    book.mark_down("n1", "timed out")
    clock.now += 1
    assert book.claim_due() == ["n1"]
    book.mark_down("n1", "did not answer within 2 s")  # e.g. a survey's own call timing out meanwhile
    clock.now += 10
    assert book.claim_due() == []
    book.finish_probe("n1")  # the probe ended without marking anything: the node waits its back-off
    assert book.next_due_in() == 2.0 and book.down() == {"n1": "did not answer within 2 s"}
    book.finish_probe("n2")  # not down: nothing to do
    assert book.down() == {"n1": "did not answer within 2 s"}


def test_requests_skip_only_a_node_whose_last_failure_was_a_timeout():
    book = HealthBook(clock=Clock())
    book.mark_down("refused", "connection refused")
    book.mark_down("hung", "timed out", slow=True)
    assert not book.avoid("refused") and book.avoid("hung") and not book.avoid("up")
    # Failing fast later: asking costs nothing again.
    book.mark_down("hung", "connection refused")
    assert not book.avoid("hung")
