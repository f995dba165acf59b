"""First run on the embedded defaults: a users file with one user and a generated password.

The password is shown once on the terminal (stderr, not the JSON log, which is
shipped to the search engine) and kept in a 0600 file in the state directory so
a newcomer who missed it can read it there.
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import bcrypt
import yaml

FIRST_UID = 1000


def ensure_users_file(users_file: Path, password_file: Path, name: str, uid: int = FIRST_UID,
                      page_url: str = "the web page") -> bool:
    """Create USERS_FILE with NAME when it does not exist; True when it was created.
    PAGE_URL is where the newcomer logs in: the message names it, so nothing needs guessing."""
    if users_file.exists():
        return False
    password = secrets.token_urlsafe(12)
    entry = {"name": name, "uid": uid, "gid": uid, "groups": [],
             "password_hash": bcrypt.hashpw(password.encode(), bcrypt.gensalt(12)).decode()}
    _write_private(password_file, f"user: {name}\npassword: {password}\n")
    _write_private(users_file, yaml.safe_dump({"users": [entry]}, sort_keys=False))
    print(f"asci: first run — open {page_url} and log in as {name!r} with password {password}\n"
          f"asci: (also kept in {password_file}, readable only by you)", file=sys.stderr, flush=True)
    return True


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)
