"""`asci logging install` rides out a node's brief push-back (429 circuit breaker, 503) but not real refusals."""
from __future__ import annotations

import pytest

from asci_logging.assets import load_assets
from asci_logging.installer import Installer
from asci_logging.search_client import SearchEngineError


class Answer:
    def __init__(self, status: int, body: dict | None = None):
        self.status_code = status
        self._body = body or {}
        self.text = str(self._body)

    def json(self) -> dict:
        return self._body


class Session:
    def __init__(self, *answers: Answer):
        self.answers = list(answers)
        self.asked = 0

    def request(self, method: str, url: str, json=None, timeout=None) -> Answer:
        self.asked += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def installer(session: Session, waited: list[float]) -> Installer:
    return Installer("http://search", session, load_assets("t"), sleep=waited.append)  # type: ignore[arg-type]


def test_pushback_is_retried_a_few_times():
    waited: list[float] = []
    session = Session(Answer(429), Answer(503), Answer(200, {"version": {"distribution": "opensearch"}}))
    assert installer(session, waited)._call("GET", "/").status_code == 200
    assert session.asked == 3 and waited == [0.5, 1.0]


def test_lasting_pushback_and_refusals_end_in_one_error():
    waited: list[float] = []
    with pytest.raises(SearchEngineError, match="HTTP 429"):
        installer(Session(Answer(429)), waited)._call("GET", "/")
    assert len(waited) == 4 and sum(waited) < 10
    waited.clear()
    with pytest.raises(SearchEngineError, match="HTTP 400"):
        installer(Session(Answer(400)), waited)._call("PUT", "/_ingest/pipeline/x", {})
    assert waited == []
