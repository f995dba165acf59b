"""`asci sessions | nodes | environments`: the real `asci` binary against the served sessions API."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LABELS
from tests.integration.launcher_api_support import ServedApi, write_config
from tests.integration.launcher_support import make_data, wait_for

pytestmark = pytest.mark.integration

ASCI = str(Path(sys.executable).with_name("asci"))


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture
def config_path(stack, tmp_path) -> Path:
    root = tmp_path / "fs"
    make_data(root, ("alice", 5001), ("bob", 5002), ("carol", 5003))
    return write_config(tmp_path, str(stack.config.stack.docker.socket), root)


@pytest.fixture
def served(config_path, scope):
    api = ServedApi(config_path, scope).start()
    yield api
    api.stop()


def asci(config_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ASCI, "-c", str(config_path), *args], capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess, code: int, prefix: str, words: str) -> None:
    assert result.returncode == code, result
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(prefix + ": ") and words in result.stderr, result.stderr


def test_sessions_create_list_show_stop(served, config_path, docker_client, scope):
    created = asci(config_path, "sessions", "create", "tiny", "--user", "alice", "--json")
    assert created.returncode == 0, created.stderr
    session = json.loads(created.stdout)
    assert session["user"] == "alice" and session["state"] == "ready"
    assert docker_client.containers.get(session["container_id"]).labels["asci.session"] == session["id"]

    listed = json.loads(asci(config_path, "sessions", "list", "--json").stdout)
    assert [s["id"] for s in listed] == [session["id"]]
    table = asci(config_path, "sessions", "list", "--user", "alice").stdout.splitlines()
    assert table[0].split() == ["ID", "USER", "ENVIRONMENT", "NODE", "STATE", "CREATED"]
    assert table[1].split()[:5] == [session["id"], "alice", "tiny", "local", "ready"]
    assert asci(config_path, "sessions", "list", "--user", "bob", "--json").stdout.strip() == "[]"
    shown = asci(config_path, "sessions", "show", session["id"])
    assert shown.returncode == 0 and f"session {session['id']}: tiny for alice on local" in shown.stdout

    # The stand-in image has no password command: the API's 503 becomes one line and exit 1.
    one_line_error(asci(config_path, "sessions", "connect", session["id"]), 1, "asci sessions", "(HTTP 503)")
    # Acting as bob, alice's session does not exist.
    one_line_error(asci(config_path, "sessions", "stop", session["id"], "--user", "bob"), 2, "asci sessions",
                   f"no session {session['id']} (HTTP 404)")

    stopped = asci(config_path, "sessions", "stop", session["id"])
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"session {session['id']}: stopped"
    assert docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]}) == []


def test_refusals_end_in_one_line(served, config_path, docker_client, scope):
    one_line_error(asci(config_path, "sessions", "create", "nope", "--user", "alice"), 2, "asci sessions",
                   "no environment named 'nope' (HTTP 404)")
    one_line_error(asci(config_path, "sessions", "create", "tiny", "--user", "carol"), 2, "asci sessions",
                   "'carol' may not start 'tiny' (HTTP 403)")
    one_line_error(asci(config_path, "sessions", "create", "huge", "--user", "alice"), 1, "asci sessions",
                   "local: 0 of 2 CPUs reserved, 64 needed")
    one_line_error(asci(config_path, "sessions", "show", "../../etc"), 2, "asci sessions", "(HTTP 404)")
    one_line_error(asci(config_path, "nodes", "show", "elsewhere"), 2, "asci nodes", "no such node (HTTP 404)")
    assert docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]}) == []


def test_nodes_and_environments(served, config_path):
    nodes = json.loads(asci(config_path, "nodes", "list", "--json").stdout)
    assert [(n["name"], n["cpus"], n["memory"]) for n in nodes] == [("local", 2.0, 4 * 1024 ** 3)]
    table = asci(config_path, "nodes", "show", "local").stdout.splitlines()
    assert table[0].split()[:3] == ["NODE", "STATE", "CPUS"] and table[1].split()[:3] == ["local", "up", "0/2"]
    header = asci(config_path, "nodes", "list").stdout.splitlines()[0].split()
    assert header[8:10] == ["GL", "RENDER-FREE"]
    everything = json.loads(asci(config_path, "environments", "list", "--json").stdout)
    assert [e["name"] for e in everything] == ["tiny", "huge", "fat", "gpu"]
    assert json.loads(asci(config_path, "environments", "list", "--user", "carol", "--json").stdout) == []
    assert asci(config_path, "environments", "list").stdout.split()[:6] == ["NAME", "TITLE", "CPUS", "MEMORY", "GPUS",
                                                                            "IMAGE"]


def test_nodes_show_the_measured_use_next_to_the_reservations(stack, tmp_path, scope):
    root = tmp_path / "fs"
    make_data(root, ("alice", 5001))
    path = write_config(tmp_path, str(stack.config.stack.docker.socket), root, launcher={"usage_interval": 0.5})
    api = ServedApi(path, scope).start()
    try:
        def measured_row() -> dict[str, str] | None:
            header, row = asci(path, "nodes", "show", "local").stdout.splitlines()[:2]
            # Cells hold spaces ("0 B/4 GiB"): cut the row where the header's columns start.
            starts = [m.start() for m in re.finditer(r"\S+", header)] + [len(row)]
            cells = {name: row[a:b].strip() for name, a, b in zip(header.split(), starts, starts[1:])}
            return cells if cells["CPU-USED"] != "-" else None
        cells = wait_for(measured_row, timeout=30, what="a measured local node in `asci nodes show`")
        assert list(cells)[:8] == ["NODE", "STATE", "CPUS", "MEMORY", "GPUS", "CPU-USED", "MEM-USED", "SESSIONS"]
        assert (cells["NODE"], cells["STATE"], cells["CPUS"]) == ("local", "up", "0/2")
        assert float(cells["CPU-USED"]) >= 0 and cells["MEM-USED"].endswith("B")
    finally:
        api.stop()


def test_no_service_and_no_token_end_in_one_line(config_path, tmp_path):
    one_line_error(asci(config_path, "sessions", "list"), 1, "asci sessions",
                   "no API token at ")  # `asci serve` never started with this configuration
    token = tmp_path / "launcher" / "api-token"
    token.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token.write_text("t" * 43 + "\n")
    token.chmod(0o644)
    one_line_error(asci(config_path, "nodes", "list"), 1, "asci nodes", "readable by other users")
    token.chmod(0o600)
    one_line_error(asci(config_path, "environments", "list"), 1, "asci environments",
                   "no ASCI service answers at http://127.0.0.1:")


def test_a_real_asci_serve_makes_its_token_and_answers_the_cli(stack, tmp_path):
    """The routes hook under the real `asci serve` process. No environment is configured, so the
    launcher stays idle: it must not reconcile (the shared engine holds other runs' sessions)."""
    import signal
    import stat

    import requests
    import yaml

    from tests.conftest import free_port

    port = free_port()
    config = tmp_path / "asci.yaml"
    config.write_text(yaml.safe_dump({"server": {"port": port}, "stack": {"state_dir": str(tmp_path / "state")},
                                      "launcher": {"workdir": str(tmp_path / "launcher"), "environments": []}}))
    proc = subprocess.Popen([ASCI, "-c", str(config), "serve"], stdout=subprocess.PIPE, text=True)
    try:
        seen = []
        while not seen or seen[-1]["message"] != "listening":
            line = proc.stdout.readline()
            assert line, f"asci serve exited: {seen}"
            seen.append(json.loads(line))
        messages = [e["message"] for e in seen if e["component"] == "launcher"]
        assert messages == ["sessions API ready", "launcher idle: no environments configured, nothing reconciled or culled"]
        token_file = tmp_path / "launcher" / "api-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert token_file.read_text().strip() not in json.dumps(seen)
        anonymous = requests.get(f"http://127.0.0.1:{port}/api/v1/sessions", timeout=10)
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
        listed = asci(config, "sessions", "list", "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout) == []
        assert json.loads(asci(config, "environments", "list", "--json").stdout) == []
        one_line_error(asci(config, "sessions", "create", "desktop", "--user", "alice"), 2, "asci sessions",
                       "no environment named 'desktop' (HTTP 404)")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_asci_serve_on_the_embedded_defaults_offers_desktop_base_and_reconciles_only_its_scope(stack, tmp_path):
    """The default environment is there for a newcomer, whose first-run user the web page creates;
    the reconcile at start sees only sessions of the default scope (tests' sessions carry their own)."""
    import signal

    import yaml

    from tests.conftest import free_port

    port = free_port()
    config = tmp_path / "asci.yaml"
    config.write_text(yaml.safe_dump({"server": {"port": port}, "stack": {"state_dir": str(tmp_path / "state")}}))
    proc = subprocess.Popen([ASCI, "-c", str(config), "serve"], stdout=subprocess.PIPE, text=True)
    try:
        seen = []
        while not seen or seen[-1]["message"] != "listening":
            line = proc.stdout.readline()
            assert line, f"asci serve exited: {seen}"
            seen.append(json.loads(line))
        launcher_lines = [e for e in seen if e["component"] == "launcher"]
        # Only the order of these three: a default-scope session a developer's own `asci serve` runs on this
        # engine may be adopted in between (one launcher per engine is the production rule).
        messages = [e["message"] for e in launcher_lines
                    if e["message"] in ("sessions API ready", "reconciled at start", "culling started")]
        assert messages == ["sessions API ready", "reconciled at start", "culling started"]
        assert (tmp_path / "state/web/first-run-password").stat().st_mode & 0o777 == 0o600
        [env] = json.loads(asci(config, "environments", "list", "--json").stdout)
        assert (env["name"], env["title"]) == ("desktop-base", "Debian desktop")
        assert env["image"] == f"{stack.registry.address}/bl/desktop-base:latest"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
