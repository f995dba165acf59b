"""A fresh one-time VNC password inside a session, passed on stdin to the image's command.

The password exists only in memory here and in the Secret handed to the caller;
it is not an argument (visible in `ps` and the engine's exec record), not logged,
not stored. The command's output is discarded for the same reason.
"""
from __future__ import annotations

import secrets
import socket
import string
import time
from typing import Any

from .errors import StartFailed

PASSWORD_COMMAND = "/usr/local/bin/asci-set-vnc-password"
# VNC authentication uses the first 8 characters only.
PASSWORD_LENGTH = 8
_ALPHABET = string.ascii_letters + string.digits


def new_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


def set_password(client: Any, container_id: str, password: str, timeout: float, user: str = "") -> None:
    """USER ("uid:gid"): run the command as the session's user rather than the image's default."""
    api = client.api
    exec_id = api.exec_create(container_id, [PASSWORD_COMMAND], stdin=True, stdout=True, stderr=True,
                              user=user)["Id"]
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
    code = _exit_code(api, exec_id, timeout)
    if code != 0:
        raise StartFailed(f"the session's password command {PASSWORD_COMMAND} failed (exit {code})")


def _exit_code(api: Any, exec_id: str, timeout: float) -> int | None:
    # The stream closes as the process ends; the engine may record its exit a moment later.
    deadline = time.monotonic() + timeout
    while True:
        state = api.exec_inspect(exec_id)
        if not state.get("Running") or time.monotonic() > deadline:
            return state.get("ExitCode")
        time.sleep(0.01)


def wait_until_dropped(client: Any, container_id: str, uid: int, timeout: float) -> None:
    """Until the session's first process runs as UID: the image's entry point has created the
    account, written its own first password and dropped root (a password set before would be
    overwritten by that first one)."""
    deadline = time.monotonic() + timeout
    while True:
        attrs = client.api.inspect_container(container_id)
        state = attrs.get("State") or {}
        if not state.get("Running"):
            raise StartFailed(f"the session ended during start-up (exit {state.get('ExitCode')})")
        pid = str(state.get("Pid"))
        rows = client.api.top(container_id, ps_args="-o pid,uid").get("Processes") or []
        if any(row[0] == pid and row[1] == str(uid) for row in rows):
            return
        if time.monotonic() > deadline:
            raise StartFailed(f"the session's entry point did not switch to uid {uid} within {timeout:g} s")
        time.sleep(0.02)
