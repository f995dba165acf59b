"""The first-run user: created once, password on the terminal with the URL to open, and in a 0600 file."""
from __future__ import annotations

import bcrypt
import yaml

from asci_core.config import load_config
from asci_core.web.app import page_url
from asci_core.web.first_run import ensure_users_file


def test_first_run_names_the_url_and_keeps_the_password_private(tmp_path, capsys):
    users, secret = tmp_path / "launcher/users.yaml", tmp_path / "web/first-run-password"
    assert ensure_users_file(users, secret, "researcher", page_url="http://127.0.0.1:8080/")
    kept = yaml.safe_load(secret.read_text())
    said = capsys.readouterr().err
    assert "open http://127.0.0.1:8080/ and log in as 'researcher'" in said and kept["password"] in said
    assert str(secret) in said
    assert secret.stat().st_mode & 0o777 == 0o600 and users.stat().st_mode & 0o777 == 0o600
    [entry] = yaml.safe_load(users.read_text())["users"]
    assert entry["name"] == kept["user"] == "researcher"
    assert bcrypt.checkpw(kept["password"].encode(), entry["password_hash"].encode())
    # Never again: a second start says nothing and keeps the first password.
    assert not ensure_users_file(users, secret, "researcher", page_url="http://127.0.0.1:8080/")
    assert capsys.readouterr().err == "" and yaml.safe_load(secret.read_text()) == kept


def test_the_page_url_is_one_a_local_browser_can_open(tmp_path):
    def url(text: str) -> str:
        path = tmp_path / "asci.yaml"
        path.write_text(text)
        return page_url(load_config(path))

    assert url("{}") == "http://127.0.0.1:8080/"
    assert url("server: {host: 0.0.0.0, port: 8443}") == "http://127.0.0.1:8443/"
    assert url("server: {host: '::1'}") == "http://[::1]:8080/"
    assert url("web: {origin: 'https://asci.example.org/'}") == "https://asci.example.org/"
