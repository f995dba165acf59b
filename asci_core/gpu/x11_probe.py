"""Does an X server accept a connection with a given cookie? The X11 connection setup, spoken directly."""
from __future__ import annotations

import socket
import struct
from pathlib import Path

from asci_core.gpu.xauth import MIT_MAGIC_COOKIE


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def setup_request(cookie: bytes | None) -> bytes:
    name, data = (MIT_MAGIC_COOKIE, cookie) if cookie is not None else (b"", b"")
    # 'l': little-endian; protocol 11.0; then the authorization name and data, each padded to 4 bytes.
    return struct.pack("<cxHHHHxx", b"l", 11, 0, len(name), len(data)) + _pad(name) + _pad(data)


def x_connection(socket_path: Path, cookie: bytes | None, timeout: float = 3.0) -> tuple[bool, str]:
    """(accepted, why): the server's answer to a connection setup on SOCKET_PATH with COOKIE."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(socket_path))
            sock.sendall(setup_request(cookie))
            head = sock.recv(8)
        except OSError as exc:
            return False, f"no X server on {socket_path} ({exc.strerror or type(exc).__name__})"
    if len(head) < 8:
        return False, "the X server closed the connection"
    if head[0] == 1:
        return True, "accepted"
    # Failed (0) or Authenticate (2): byte 1 is the reason's length; reading it is not worth a round trip.
    return False, "refused by the X server (no or wrong cookie)"
