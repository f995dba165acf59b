from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from asci_core import __version__

ASCI = [str(Path(sys.executable).with_name("asci"))]


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*ASCI, *args], capture_output=True, text=True, timeout=60, **kw)


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"asci {__version__}"


def test_config_error_is_one_clear_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: 99999\n")
    result = run("-c", str(bad), "config", "check")
    assert result.returncode == 2
    assert result.stderr.strip() == f"asci: configuration error: {bad}: server.port: expected a port from 1 to 65535, got 99999"
    assert "Traceback" not in result.stderr


def test_config_check_accepts_a_good_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("server:\n  port: 8181\n")
    result = run("-c", str(good), "config", "check")
    assert result.returncode == 0 and result.stdout.strip() == f"{good}: ok"


def test_config_help_lists_settings():
    result = run("config", "help")
    assert result.returncode == 0
    assert "stack.registry.port\n    listen port of the managed registry [default: 5000]" in result.stdout


def test_unknown_subcommand_is_a_usage_error():
    result = run("stak", "up")
    assert result.returncode == 2 and "invalid choice: 'stak'" in result.stderr


# --- every expected failure: one line on stderr and a documented exit code ------------------------


def one_line(result: subprocess.CompletedProcess, code: int, starts: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith(starts), result.stderr
    return lines[0]


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "asci.yaml"
    path.write_text(text)
    return str(path)


def test_unmanaged_registry_without_url_fails_the_check(tmp_path):
    bad = config_file(tmp_path, "stack:\n  registry:\n    managed: false\n")
    for command in (["config", "check"], ["serve"], ["registry", "ls"]):
        line = one_line(run("-c", bad, *command), 2, "asci: configuration error: ")
        assert line.endswith("stack.registry.url: required when stack.registry.managed is false (the site registry's URL)")


def test_missing_config_file_is_exit_2(tmp_path):
    one_line(run("-c", str(tmp_path / "nope.yaml"), "config", "check"), 2, f"asci: configuration error: {tmp_path}")


def test_unusable_state_dir_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "a-file").write_text("")
    cfg = config_file(tmp_path, f"stack:\n  state_dir: {tmp_path / 'a-file' / 'state'}\n")
    line = one_line(run("-c", cfg, "stack", "up"), 1, "asci: state directory ")
    assert "is not usable" in line


def test_malformed_image_reference_is_exit_2(tmp_path):
    cfg = config_file(tmp_path, f"stack:\n  state_dir: {tmp_path / 'state'}\n")
    line = one_line(run("-c", cfg, "registry", "digest", "Bad..Name:v1"), 2, "asci registry: ")
    assert "'Bad..Name' is not a valid repository name" in line


def test_users_of_an_unmanaged_registry_is_exit_2(tmp_path):
    cfg = config_file(tmp_path, "stack:\n  registry:\n    managed: false\n    url: http://127.0.0.1:1\n")
    one_line(run("-c", cfg, "registry", "users", "list"), 2, "asci registry: stack.registry.managed is false")


def test_registry_that_does_not_answer_is_exit_1(tmp_path):
    cfg = config_file(tmp_path, "stack:\n  registry:\n    managed: false\n    url: http://127.0.0.1:1\n")
    line = one_line(run("-c", cfg, "registry", "ls"), 1, "asci registry: ")
    assert "does not answer" in line


def test_builds_without_a_service_is_exit_1():
    line = one_line(run("builds", "--url", "http://127.0.0.1:1", "show", "7"), 1, "asci builds: ")
    assert line == "asci builds: no ASCI service answers at http://127.0.0.1:1 (is `asci serve` running?)"


def test_bad_build_id_is_a_usage_error():
    result = run("builds", "show", "seven")
    assert result.returncode == 2 and "'seven' is not a build id" in result.stderr and "Traceback" not in result.stderr


def test_old_logging_level_key_still_loads(tmp_path):
    cfg = config_file(tmp_path, "logging:\n  level: debug\n")
    assert run("-c", cfg, "config", "check").returncode == 0


def test_a_moved_setting_loads_with_one_warning_line_each(tmp_path):
    cfg = config_file(tmp_path, "autobuild:\n  max_connections: 9\nlogging:\n  level: info\n")
    result = run("-c", cfg, "config", "check")
    assert result.returncode == 0 and result.stdout == f"{cfg}: ok\n"
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert sorted((l["level"], l["message"], l["setting"], l["new_setting"]) for l in lines) == [
        ("warning", "setting moved: rename it in the configuration", "autobuild.max_connections",
         "server.max_connections"),
        ("warning", "setting moved: rename it in the configuration", "logging.level", "log.level")]
    assert run("-c", config_file(tmp_path, "server:\n  max_connections: 9\n"), "config", "check").stderr == ""
    both = run("-c", config_file(tmp_path, "autobuild:\n  max_connections: 9\nserver:\n  max_connections: 8\n"),
               "config", "check")
    assert one_line(both, 2, "asci: ").endswith("autobuild.max_connections: moved to server.max_connections, "
                                                "which is set too: keep only server.max_connections")


# --- asci config help ------------------------------------------------------------------------------


def test_config_help_lists_settings_inside_lists():
    out = run("config", "help").stdout
    for key in ("autobuild.repositories[].webhook_secret", "autobuild.hosts[].clone_url",
                "registry.retention[].keep_last", "logging.shipper.routes[].pipeline",
                "logging.shipper.routes[].container_name"):
        assert f"\n{key}\n" in out, key
    assert "registry.retention[].keep_last\n    keep the newest N release versions (semantic-version order) [default: 10]" in out
    assert "autobuild.repositories[].webhook_secret\n    HMAC secret of the repository's webhook [default: (required)]" in out


def test_config_help_lists_the_server_limits_and_the_moved_keys():
    out = run("config", "help").stdout
    assert "\nserver.max_connections\n    connections served at once by `asci serve`" in out
    assert "\nautobuild.max_connections\n    now server.max_connections\n" in out
    assert "\nlogging.level\n    now log.level\n" in out


def test_config_help_defaults_are_written_as_in_yaml():
    out = run("config", "help").stdout
    assert "stack.docker.socket\n    Docker Engine API socket [default: /var/run/docker.sock]" in out
    assert "server.host\n    address `asci serve` listens on [default: 127.0.0.1]" in out
    assert "stack.registry.url\n    registry URL when not managed, e.g. https://registry.site:5000 [default: unset]" in out
    assert "stack.docker.managed\n    start dockerd when no engine answers [default: true]" in out
    for python_repr in ("PosixPath(", "[default: None]", "[default: '", "[default: True]", "[default: False]"):
        assert python_repr not in out, python_repr


def test_config_help_into_a_closed_pipe_stops_quietly():
    # What `asci config help | head -3` does once head has its lines: the reader is gone before we write.
    proc = subprocess.Popen([*ASCI, "config", "help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""


def test_config_help_through_head():
    first = subprocess.Popen([*ASCI, "config", "help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-3"], stdin=first.stdout, capture_output=True, text=True, timeout=60)
    first.stdout.close()
    stderr = first.stderr.read().decode()
    first.wait(timeout=60)
    assert head.stdout.splitlines()[0] == "server.host" and len(head.stdout.splitlines()) == 3
    assert "Traceback" not in stderr and stderr == ""
