"""When the search engine counts as ready: its cluster state recovered, not merely answering HTTP."""
from __future__ import annotations

from typing import Any

import requests

from asci_core.stack.search_engine import readiness

GREEN = {"status": "green", "timed_out": False}


def engine(**answers: Any):
    """A GET that answers from a table: path -> (status, body), or an exception to raise."""
    asked: list[tuple[str, Any]] = []

    def get(path: str, params: dict[str, str] | None) -> tuple[int, Any]:
        asked.append((path, params))
        answer = answers[path.strip("/").replace("/", "_")]
        if isinstance(answer, Exception):
            raise answer
        return answer

    get.asked = asked  # type: ignore[attr-defined]
    return get


def test_ready_once_health_is_yellow_or_green_and_pipelines_are_readable():
    for colour in ("yellow", "green"):
        get = engine(_cluster_health=(200, {"status": colour, "timed_out": False}), _ingest_pipeline=(200, {"p": {}}))
        answer = readiness(get)
        assert answer.ready and answer.state_recovered
        # The question waits briefly on the engine's side for yellow, so callers can poll it.
        assert get.asked[0] == ("/_cluster/health", {"wait_for_status": "yellow", "timeout": "1s"})
    # No pipeline installed yet is a readable answer too.
    assert readiness(engine(_cluster_health=(200, GREEN), _ingest_pipeline=(404, {}))).ready


NOT_RECOVERED = {"blocks": {"global": {"1": {"description": "state not recovered / initialized"}}}}


def test_answering_while_the_cluster_state_is_recovering_is_not_ready():
    cases = [
        engine(_cluster_health=(200, {"status": "red", "timed_out": False}), _cluster_state_blocks=(200, NOT_RECOVERED)),
        engine(_cluster_health=(408, {"status": "red", "timed_out": True}), _cluster_state_blocks=(200, NOT_RECOVERED)),
        engine(_cluster_health=(408, {"status": "red", "timed_out": True}), _cluster_state_blocks=(503, None)),
        engine(_cluster_health=(503, {"error": {"type": "cluster_block_exception"}})),
        engine(_cluster_health=(200, None)),
        engine(_cluster_health=(408, {"status": "yellow", "timed_out": True})),
        engine(_cluster_health=requests.ConnectionError("refused")),
        engine(_cluster_health=(200, {"status": "red"}), _cluster_state_blocks=requests.ReadTimeout("slow")),
    ]
    for get in cases:
        answer = readiness(get)
        assert not answer.ready and not answer.state_recovered and answer.detail, get.asked
    red = readiness(cases[0])
    assert "not recovered" in red.detail and "red" in red.detail


def test_recovered_but_not_usable():
    # Pipelines not readable: the state is there but the engine is not ready to report "started".
    for pipelines in ((503, {}), requests.ReadTimeout("slow")):
        answer = readiness(engine(_cluster_health=(200, GREEN), _ingest_pipeline=pipelines))
        assert not answer.ready and answer.state_recovered
    # Red for a lost primary, no global block: a lasting fault, not a recovery to wait for.
    answer = readiness(engine(_cluster_health=(408, {"status": "red", "timed_out": True}),
                              _cluster_state_blocks=(200, {"cluster_name": "c", "blocks": {}})))
    assert not answer.ready and answer.state_recovered and "red" in answer.detail


def test_credentials_without_monitoring_rights_are_no_reason_to_wait():
    # A site's Elasticsearch user may index without reading cluster health: as before the check.
    for status in (401, 403):
        answer = readiness(engine(_cluster_health=(status, {"error": "forbidden"}), _ingest_pipeline=(200, {})))
        assert answer.ready and answer.state_recovered and str(status) in answer.detail
        assert readiness(engine(_cluster_health=(200, GREEN), _ingest_pipeline=(status, {}))).ready
    answer = readiness(engine(_cluster_health=(200, {"status": "red"}), _cluster_state_blocks=(403, {})))
    assert not answer.ready and answer.state_recovered
