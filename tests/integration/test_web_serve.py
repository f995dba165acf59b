"""`asci serve` on the embedded defaults: the first-run user, the page, noVNC, and the login with the printed password."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port

pytestmark = pytest.mark.integration
ASCI = str(Path(sys.executable).with_name("asci"))


def serve(state_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "ASCI_STATE_DIR": str(state_dir)}
    env.pop("ASCI_CONFIG", None)
    proc = subprocess.Popen([ASCI, "serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    while True:
        line = proc.stdout.readline()
        assert line, f"asci serve ended: {proc.stderr.read()}"
        if json.loads(line).get("message") == "listening":
            return proc


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return err


def test_first_run_creates_a_user_once_and_the_printed_password_logs_in(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(tmp_path, port)
    try:
        password_file = tmp_path / "web" / "first-run-password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "launcher" / "users.yaml").stat().st_mode) == 0o600
        password = re.search(r"password: (\S+)", password_file.read_text()).group(1)

        assert requests.get(url + "/", allow_redirects=False, timeout=10).headers["Location"] == "/login"
        assert "<form id=\"login\"" in requests.get(url + "/login", timeout=10).text
        assert requests.get(url + "/novnc/core/rfb.js", timeout=10).status_code == 200
        assert requests.get(url + "/web/static/app.js", timeout=10).status_code == 200
        browser = requests.Session()
        answer = browser.post(url + "/web/login", json={"user": "researcher", "password": password}, timeout=30)
        assert answer.status_code == 200
        assert browser.get(url + "/web/api/overview", timeout=10).json()["user"] == "researcher"
    finally:
        err = stop(proc)
    assert f"password {password}" in err and str(password_file) in err
    assert f"open {url}/ and log in" in err  # the port actually served (--port), not the configured one
    # Printed once: the next start keeps the users file and says nothing.
    proc = serve(tmp_path, port)
    assert requests.get(url + "/healthz", timeout=10).status_code == 200  # signal handlers are set after "listening"
    assert "first run" not in stop(proc)
    assert password in password_file.read_text()


def test_a_port_in_use_ends_serve_before_a_first_run_user_or_password_exists(tmp_path):
    env = {**os.environ, "ASCI_STATE_DIR": str(tmp_path)}
    env.pop("ASCI_CONFIG", None)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = subprocess.run([ASCI, "serve", "--port", str(port)], capture_output=True, text=True, timeout=60,
                                env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"asci: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert result.stdout == ""  # nothing started, so nothing logged
    assert "password" not in result.stderr
    assert not (tmp_path / "launcher" / "users.yaml").exists()
    assert not (tmp_path / "web" / "first-run-password").exists()
