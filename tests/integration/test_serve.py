"""`asci serve` is the foreground main job: it answers, logs JSON, and stops cleanly on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import free_port

ASCI = str(Path(sys.executable).with_name("asci"))


def own_state(tmp_path: Path) -> dict[str, str]:
    # On the embedded defaults `asci serve` creates a first-run user (asci_core/web): not in the shared state dir.
    return {**os.environ, "ASCI_STATE_DIR": str(tmp_path)}


def test_serve_answers_and_shuts_down_on_sigterm(tmp_path):
    port = free_port()
    proc = subprocess.Popen([ASCI, "serve", "--port", str(port)], stdout=subprocess.PIPE, text=True,
                            env=own_state(tmp_path))
    try:
        startup = []
        while not startup or startup[-1]["message"] != "listening":
            startup.append(json.loads(proc.stdout.readline()))
        first = startup[-1]
        assert first["component"] == "server"
        assert first["address"] == f"http://127.0.0.1:{port}"
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - t0 < 5
        rest = [e for e in map(json.loads, proc.stdout.read().splitlines()) if e["component"] == "server"]
        assert [e["message"] for e in rest] == ["stopping", "stopped"]
        assert rest[0]["signal"] == "SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_serve_refuses_a_port_in_use_with_a_clear_error(tmp_path):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = subprocess.run([ASCI, "serve", "--port", str(port)], capture_output=True, text=True, timeout=30,
                                env=own_state(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
