"""A web app on a real Launcher (local engine, scoped) with a bcrypt users file, served on loopback."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import bcrypt
import requests
import yaml

from asci_core.launcher.directory import LocalUsersFile
from asci_core.web.accounts import LocalAccounts
from asci_core.web.settings import WebSettings
from asci_core.web.state import WebState
from tests.integration.launcher_support import build_launcher, make_data, tiny_environment

PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-2", "carol": "carol-secret-3"}
EVIL_TITLE = '<img src=x onerror="alert(1)">Evil</b>'


def write_users(path: Path) -> None:
    entries = [{"name": name, "uid": uid, "gid": uid, "groups": groups,
                "password_hash": bcrypt.hashpw(PASSWORDS[name].encode(), bcrypt.gensalt(4)).decode()}
               for name, uid, groups in (("alice", 5001, ["i03"]), ("bob", 5002, ["i03"]), ("carol", 5003, ["i04"]))]
    path.write_text(yaml.safe_dump({"users": entries}))


def web_state(tmp_path: Path, socket_path: str, scope: dict[str, str], accounts: Any = None,
              environments: list | None = None, **settings: Any) -> WebState:
    write_users(tmp_path / "users.yaml")
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001), ("bob", 5002))
    envs = environments if environments is not None else [tiny_environment(data, title=EVIL_TITLE)]
    launcher = build_launcher(tmp_path, socket_path, scope, envs)
    web_settings = dataclasses.replace(WebSettings(), login_delay=0.05, login_max_delay=0.4, **settings)
    if accounts is not None:
        launcher.directory = accounts
    return WebState.build(web_settings, launcher, accounts or LocalAccounts(LocalUsersFile(tmp_path / "users.yaml")))


def logged_in(url: str, user: str, password: str | None = None) -> tuple[requests.Session, str]:
    """A requests session with the login cookie, and the CSRF token."""
    browser = requests.Session()
    answer = browser.post(f"{url}/web/login", json={"user": user, "password": password or PASSWORDS[user]}, timeout=30)
    assert answer.status_code == 200, answer.text
    return browser, answer.json()["csrf"]
