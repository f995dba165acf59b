"""Containers logging with the journald driver land in the journal the stack provides."""
from __future__ import annotations

import time

from systemd import journal

from tests.conftest import LABELS


def read_container_messages(name: str, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        reader = journal.Reader()
        try:
            reader.add_match(CONTAINER_NAME=name)
            entries = list(reader)
        finally:
            reader.close()
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)


def test_container_line_is_read_back_by_container_name(docker_client, unique, stack):
    name = unique("log")
    marker = f"hello from {name}"
    docker_client.containers.run(
        stack.config.stack.base_image.tiny_name, ["sh", "-c", f"echo '{marker}'; echo oops >&2"],
        name=name, remove=True, labels=LABELS,
        log_config={"Type": "journald", "Config": {"tag": f"asci/test/{name}"}},
    )
    entries = read_container_messages(name)
    by_message = {e["MESSAGE"]: e for e in entries}
    assert set(by_message) == {marker, "oops"}
    out = by_message[marker]
    assert out["CONTAINER_NAME"] == name
    assert out["SYSLOG_IDENTIFIER"] == f"asci/test/{name}"
    assert out["PRIORITY"] == 6 and by_message["oops"]["PRIORITY"] == 3
    assert out["IMAGE_NAME"] == stack.config.stack.base_image.tiny_name
