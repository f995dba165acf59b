from __future__ import annotations

import io
import json

from asci_core import jsonlog
from asci_core.config import Secret


def capture(fn) -> list[dict]:
    stream = io.StringIO()
    jsonlog.configure("debug", stream=stream)
    fn()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_fixed_keys():
    log = jsonlog.get_logger("autobuild")
    lines = capture(lambda: log.info("pushed", digest="sha256:abc", attempt=2))
    assert len(lines) == 1
    entry = lines[0]
    assert list(entry)[:4] == ["timestamp", "level", "component", "message"]
    assert entry["level"] == "info" and entry["component"] == "autobuild" and entry["message"] == "pushed"
    assert entry["digest"] == "sha256:abc" and entry["attempt"] == 2
    assert entry["timestamp"].endswith("+00:00")


def test_secrets_are_masked_and_fields_cannot_clobber_fixed_keys():
    log = jsonlog.get_logger("registry")
    entry = capture(lambda: log.warning("login", password=Secret("hunter2", "t"), message="spoof"))[0]
    assert entry["password"] == "***"
    assert entry["message"] == "login" and entry["field_message"] == "spoof"


def test_library_loggers_use_the_same_format():
    import logging

    entry = capture(lambda: logging.getLogger("somelib.sub").error("boom %s", 1))[0]
    assert entry["component"] == "somelib" and entry["message"] == "boom 1" and entry["level"] == "error"


def test_level_filters():
    log = jsonlog.get_logger("x")
    stream = io.StringIO()
    jsonlog.configure("warning", stream=stream)
    log.info("hidden")
    log.error("shown")
    assert [json.loads(l)["message"] for l in stream.getvalue().splitlines()] == ["shown"]
