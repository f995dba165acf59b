"""One direction of a test relay: bytes from one socket to another until either side ends."""
from __future__ import annotations

import socket


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy SRC to DST until SRC ends or fails, then half-close DST so the far side sees the end."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
