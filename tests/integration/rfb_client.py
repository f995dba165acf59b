"""A small RFB 3.8 client for the desktop tests: VNC authentication, raw framebuffer updates.

Only what the tests need: version exchange, security type 2 (VNC authentication: DES of the
server's challenge with the password's bits reversed), ClientInit/ServerInit, a 32-bit true-colour
pixel format, raw encoding, and reading FramebufferUpdate messages (others are skipped).
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

try:  # cryptography 43+ keeps DES-era ciphers here
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

VNC_AUTH = 2
BYTES_PER_PIXEL = 4


class AuthFailed(Exception):
    pass


def vnc_response(password: str, challenge: bytes) -> bytes:
    """The 16-byte answer to CHALLENGE: single DES (TripleDES with one key thrice), key bits mirrored."""
    key = password.encode("latin-1")[:8].ljust(8, b"\0")
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in key)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


@dataclass
class Frame:
    width: int
    height: int
    pixels: bytes  # BGRX, row by row

    def colours(self) -> int:
        return len({self.pixels[i:i + 3] for i in range(0, len(self.pixels), BYTES_PER_PIXEL)})


class RfbClient:
    def __init__(self, host: str, port: int = 5901, timeout: float = 10.0, sock: socket.socket | None = None):
        """SOCK: a connection made elsewhere (e.g. inside a test node's network namespace)."""
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.width = self.height = 0
        self.name = ""
        self._frame = bytearray()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RfbClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(min(n - len(data), 1 << 20))
            if not chunk:
                raise ConnectionError(f"server closed the connection ({len(data)}/{n} bytes read)")
            data += chunk
        return bytes(data)

    def banner(self) -> bytes:
        """Version exchange and the offered security types; the server's banner."""
        version = self._read(12)
        if not version.startswith(b"RFB 003."):
            raise ConnectionError(f"not an RFB server: {version!r}")
        self.sock.sendall(b"RFB 003.008\n")
        count = self._read(1)[0]
        if count == 0:
            reason = self._read(struct.unpack(">I", self._read(4))[0])
            raise ConnectionError(f"server refused: {reason.decode(errors='replace')}")
        self.security_types = list(self._read(count))
        return version

    def login(self, password: str) -> None:
        """Banner, VNC authentication, ClientInit (shared) and ServerInit; raises AuthFailed."""
        self.banner()
        if VNC_AUTH not in self.security_types:
            raise ConnectionError(f"no VNC authentication offered: {self.security_types}")
        self.sock.sendall(bytes([VNC_AUTH]))
        self.sock.sendall(vnc_response(password, self._read(16)))
        if struct.unpack(">I", self._read(4))[0] != 0:
            reason = self._read(struct.unpack(">I", self._read(4))[0])
            raise AuthFailed(reason.decode(errors="replace"))
        self.sock.sendall(b"\x01")  # shared: never disconnect other viewers
        self.width, self.height = struct.unpack(">HH", self._read(4))
        self._read(16)  # the server's pixel format; ours replaces it
        self.name = self._read(struct.unpack(">I", self._read(4))[0]).decode(errors="replace")
        # 32 bpp, depth 24, little-endian, true colour, 8 bits per channel at shifts 16/8/0.
        self.sock.sendall(struct.pack(">B3xBBBBHHHBBB3x", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
        self.sock.sendall(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: raw only
        self._frame = bytearray(self.width * self.height * BYTES_PER_PIXEL)

    def request(self, incremental: bool = False) -> None:
        self.sock.sendall(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, self.width, self.height))

    def next_update(self, deadline: float) -> int:
        """Read messages until a FramebufferUpdate has been applied; the number of rectangles."""
        while time.monotonic() < deadline:
            kind = self._read(1)[0]
            if kind == 0:
                self._read(1)
                (count,) = struct.unpack(">H", self._read(2))
                for _ in range(count):
                    x, y, w, h, encoding = struct.unpack(">HHHHi", self._read(12))
                    if encoding != 0:
                        raise ConnectionError(f"unexpected encoding {encoding}")
                    data = self._read(w * h * BYTES_PER_PIXEL)
                    row = w * BYTES_PER_PIXEL
                    for line in range(h):
                        start = ((y + line) * self.width + x) * BYTES_PER_PIXEL
                        self._frame[start:start + row] = data[line * row:(line + 1) * row]
                return count
            if kind == 1:  # SetColourMapEntries
                self._read(3)
                (n,) = struct.unpack(">H", self._read(2))
                self._read(6 * n)
            elif kind == 2:  # Bell
                continue
            elif kind == 3:  # ServerCutText
                self._read(3)
                self._read(struct.unpack(">I", self._read(4))[0])
            else:
                raise ConnectionError(f"unknown server message {kind}")
        raise TimeoutError("no framebuffer update before the deadline")

    def full_frame(self, timeout: float = 10.0) -> Frame:
        self.request(incremental=False)
        self.next_update(time.monotonic() + timeout)
        return Frame(self.width, self.height, bytes(self._frame))
