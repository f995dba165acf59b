"""The search engine answers the Elasticsearch API and really has ingest-common loaded."""
from __future__ import annotations

import pytest
import requests
from elasticsearch import Elasticsearch

LINE = '127.0.0.1 - alice [26/Nov/2026:05:30:00 +0000] "GET /builds/42 HTTP/1.1" 200 512'
PIPELINE = {
    "description": "access line",
    "processors": [
        {"grok": {"field": "message",
                  "patterns": ['%{IP:client_ip} - %{USER:user} \\[%{HTTPDATE:ts}\\] "%{WORD:method} %{URIPATHPARAM:path} HTTP/%{NUMBER}" %{NUMBER:status:int} %{NUMBER:bytes:int}']}},
        {"date": {"field": "ts", "formats": ["dd/MMM/yyyy:HH:mm:ss Z"], "target_field": "@timestamp"}},
        {"rename": {"field": "client_ip", "target_field": "client.ip"}},
        {"remove": {"field": "ts"}},
    ],
}


@pytest.fixture
def es(stack):
    client = Elasticsearch([stack.search_url], timeout=30)
    yield client
    client.transport.close()


def test_root_answers_from_opensearch(stack):
    info = requests.get(stack.search_url, timeout=5).json()
    assert info["version"]["distribution"] == "opensearch"
    assert info["version"]["number"].startswith("2.19.")


def test_simulate_parses_with_grok_date_and_rename(es):
    result = es.ingest.simulate(body={"pipeline": PIPELINE, "docs": [{"_source": {"message": LINE}}]})
    source = result["docs"][0]["doc"]["_source"]
    assert source["client"] == {"ip": "127.0.0.1"}
    assert source["user"] == "alice" and source["method"] == "GET" and source["path"] == "/builds/42"
    assert source["status"] == 200 and source["bytes"] == 512
    assert source["@timestamp"] == "2026-11-26T05:30:00.000Z"
    assert "ts" not in source


def test_document_indexed_through_pipeline_reads_back_parsed(es, unique):
    name = unique("idx")
    es.ingest.put_pipeline(id=name, body=PIPELINE)
    try:
        es.index(index=name, id="1", body={"message": LINE}, pipeline=name, refresh=True)
        doc = es.get(index=name, id="1")["_source"]
        assert doc["client"]["ip"] == "127.0.0.1" and doc["status"] == 200
        hits = es.search(index=name, body={"query": {"term": {"method.keyword": "GET"}}})["hits"]["hits"]
        assert [h["_id"] for h in hits] == ["1"]
    finally:
        es.indices.delete(index=name, ignore_unavailable=True)
        es.ingest.delete_pipeline(id=name)


def test_a_broken_line_fails_the_grok_processor(es):
    result = es.ingest.simulate(body={"pipeline": PIPELINE, "docs": [{"_source": {"message": "garbage"}}]})
    assert "error" in result["docs"][0]
    assert "Provided Grok expressions do not match" in result["docs"][0]["error"]["reason"]
