"""`asci stack up` starts only what is missing; `down` stops exactly what it started.

These tests drive the real CLI with their own state directory and a registry on
their own port, beside the session's stack, which must come through untouched.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from asci_core.stack.process import ProcessIdentity
from asci_core.stack.state import StackState
from tests.conftest import free_port
from tests.support.side_config import shared_services

ASCI = str(Path(sys.executable).with_name("asci"))


def asci(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ASCI, "-c", str(config), "--log-level", "warning", *args],
                          capture_output=True, text=True, timeout=180)


def parts(result: subprocess.CompletedProcess) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(result.stdout)["parts"]}


@pytest.fixture
def side_config(tmp_path, stack) -> tuple[Path, int]:
    port = free_port()
    text = yaml.safe_dump({
        "stack": {
            **shared_services(stack.config),
            "state_dir": str(tmp_path / "state"),
            "registry": {"port": port},
        }
    })
    path = tmp_path / "asci.yaml"
    path.write_text(text)
    return path, port


def session_pids(stack) -> dict[str, ProcessIdentity]:
    records = StackState(stack.config.stack.state_dir).load()
    return {name: rec.identity for name, rec in records.items() if rec.kind == "process"}


def test_up_twice_then_down_stops_exactly_what_it_started(side_config, stack):
    config, port = side_config
    before = session_pids(stack)

    first = asci(config, "stack", "up", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    report = parts(first)
    assert report["registry"]["action"] == "started" and report["registry"]["started_by"].startswith("asci (pid ")
    for name in ("journald", "docker", "search", "base_image"):
        assert report[name]["action"] == "already up"
        assert report[name]["started_by"] == "external", name  # this state dir did not start them

    second = asci(config, "stack", "up", "--json")
    assert second.returncode == 0
    assert [p["action"] for p in parts(second).values()] == ["already up"] * 5

    status = asci(config, "stack", "status", "--json")
    assert status.returncode == 0 and parts(status)["registry"]["started_by"] == report["registry"]["started_by"]

    ours = StackState(config.parent / "state").load()["registry"].identity
    assert ours.alive()
    down = asci(config, "stack", "down")
    assert down.returncode == 0 and down.stdout.strip() == "registry: stopped"
    assert not ours.alive()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2)

    # Everything this state dir did not start is still running and answering.
    for name, ident in before.items():
        assert ident.alive(), f"session {name} was stopped by someone else's down"
    assert requests.get(stack.search_url, timeout=5).ok

    again = asci(config, "stack", "down")
    assert again.stdout.strip() == "nothing to stop: asci started none of the running parts"


def test_a_part_that_cannot_start_is_reported_with_its_log(side_config, stack):
    config, port = side_config
    # Something that is not a registry holds the port: the registry cannot bind it.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    try:
        result = asci(config, "stack", "up")
    finally:
        blocker.close()
    assert result.returncode == 1
    assert "registry    DOWN" in result.stdout
    assert "registry: exited during start-up" in result.stdout
    assert "address already in use" in result.stdout  # the reason, from the registry's own log
    assert StackState(config.parent / "state").load().get("registry") is None


def test_status_reports_a_down_unmanaged_part_and_exits_3(tmp_path, stack):
    config = tmp_path / "asci.yaml"
    config.write_text(yaml.safe_dump({"stack": {
        "state_dir": str(tmp_path / "state"),
        "search": {"managed": False, "url": f"http://127.0.0.1:{free_port()}"},
    }}))
    result = asci(config, "stack", "status")
    assert result.returncode == 3
    assert "search      DOWN" in result.stdout
    up = asci(config, "stack", "up")
    assert up.returncode == 1 and "not answering and not managed by asci" in up.stdout
