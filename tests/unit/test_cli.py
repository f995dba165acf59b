from __future__ import annotations

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
