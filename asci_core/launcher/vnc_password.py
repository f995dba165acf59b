"""A fresh one-time VNC password inside a session, passed on stdin to the image's command.

The password exists only in memory here and in the Secret handed to the caller;
it is not an argument (visible in `ps` and the engine's exec record), not logged,
not stored. The command's output is discarded for the same reason.
"""
from __future__ import annotations

import secrets
import socket
import string
from typing import Any

from .errors import StartFailed

PASSWORD_COMMAND = "/usr/local/bin/asci-set-vnc-password"
# VNC authentication uses the first 8 characters only.
PASSWORD_LENGTH = 8
_ALPHABET = string.ascii_letters + string.digits


def new_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


def set_password(client: Any, container_id: str, password: str, timeout: float) -> None:
    api = client.api
    exec_id = api.exec_create(container_id, [PASSWORD_COMMAND], stdin=True, stdout=True, stderr=True)["Id"]
    stream = api.exec_start(exec_id, socket=True)
    raw = getattr(stream, "_sock", stream)
    try:
        raw.settimeout(timeout)
        raw.sendall(password.encode() + b"\n")
        raw.shutdown(socket.SHUT_WR)
        while raw.recv(65536):
            pass
    finally:
        raw.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    if code != 0:
        raise StartFailed(f"the session's password command {PASSWORD_COMMAND} failed (exit {code})")
