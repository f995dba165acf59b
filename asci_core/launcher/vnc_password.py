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


# Exit code of the guard below while the image's entry point has not written its first password.
NOT_YET = 75


def set_password(client: Any, container_id: str, password: str, timeout: float, user: str = "",
                 after: str | None = None) -> None:
    """USER ("uid:gid"): run the command as the session's user rather than the image's default.
    AFTER: a file the image's entry point writes last before it drops root (its own first
    password); until it exists the command is not run, and is tried again within TIMEOUT — a
    password set earlier would be overwritten by that first one."""
    deadline = time.monotonic() + timeout
    # One exec that waits inside the session (10 ms steps, about 5 s) costs far less than an exec per try.
    command = [PASSWORD_COMMAND] if after is None else [
        "/bin/sh", "-c", 'i=0; while [ ! -s "$1" ]; do i=$((i+1)); [ "$i" -le 500 ] || exit %d; sleep 0.01; done; '
                         'exec "$2"' % NOT_YET, "asci-connect", after, PASSWORD_COMMAND]
    while True:
        code = _run_once(client, container_id, command, password, timeout, user)
        if code != NOT_YET or after is None:
            break
        if time.monotonic() > deadline:
            raise StartFailed(f"the session did not finish its start-up within {timeout:g} s")
        time.sleep(0.01)
    if code != 0:
        raise StartFailed(f"the session's password command {PASSWORD_COMMAND} failed (exit {code})")


def _run_once(client: Any, container_id: str, command: list[str], password: str, timeout: float, user: str) -> int:
    api = client.api
    exec_id = api.exec_create(container_id, command, stdin=True, stdout=True, stderr=True, user=user)["Id"]
    stream = api.exec_start(exec_id, socket=True)
    raw = getattr(stream, "_sock", stream)
    try:
        raw.settimeout(timeout)
        try:
            raw.sendall(password.encode() + b"\n")
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the guard exited before reading its input
        while raw.recv(65536):
            pass
    finally:
        raw.close()
    return _exit_code(api, exec_id, timeout)


def _exit_code(api: Any, exec_id: str, timeout: float) -> int | None:
    # The stream closes as the process ends; the engine may record its exit a moment later.
    deadline = time.monotonic() + timeout
    while True:
        state = api.exec_inspect(exec_id)
        if not state.get("Running") or time.monotonic() > deadline:
            return state.get("ExitCode")
        time.sleep(0.01)
