"""The two halves of the RFB handshake the proxy performs.

Towards the session's Xvnc the proxy is the client and answers the VncAuth
challenge with the one-time password; towards the browser it is the server and
offers security type None. After both, the byte streams are joined unchanged
(the browser's ClientInit is the next thing Xvnc expects). The browser therefore
never holds a VNC password: the connect token, single-use and bound to its
login, is the only credential it sees.
"""
from __future__ import annotations

from asci_core.errors import AsciError

import asyncio
import struct
from typing import Any

try:  # cryptography >= 43 keeps DES-era ciphers in `decrepit`
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

VERSION = b"RFB 003.008\n"
NONE, VNC_AUTH = 1, 2


class HandshakeFailed(AsciError):
    pass


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """DES of the challenge; the key is the password's first 8 bytes with each byte's bits reversed."""
    key = password.encode("latin-1", "replace")[:8].ljust(8, b"\0")
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in key)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


async def authenticate_upstream(reader: Any, writer: Any, password: str) -> None:
    """Leave the connection just before ClientInit, authenticated; HandshakeFailed otherwise.
    READER has `readexactly`, WRITER `write` and `drain`: asyncio's streams, or the proxy's DesktopLink as both."""
    try:
        version = await reader.readexactly(12)
        if not version.startswith(b"RFB 003."):
            raise HandshakeFailed("the session did not speak RFB")
        writer.write(VERSION)
        count = (await reader.readexactly(1))[0]
        if count == 0:
            raise HandshakeFailed(f"the session refused: {await _reason(reader)}")
        offered = await reader.readexactly(count)
        if VNC_AUTH not in offered:
            raise HandshakeFailed(f"the session offers no VNC authentication (types {list(offered)})")
        writer.write(bytes([VNC_AUTH]))
        challenge = await reader.readexactly(16)
        writer.write(vnc_auth_response(password, challenge))
        await writer.drain()
        (result,) = struct.unpack(">I", await reader.readexactly(4))
        if result != 0:
            raise HandshakeFailed(f"the session refused the password: {await _reason(reader)}")
    except asyncio.IncompleteReadError:
        raise HandshakeFailed("the session closed the connection during the handshake") from None


async def _reason(reader: Any) -> str:
    try:
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        return (await reader.readexactly(min(length, 1024))).decode("utf-8", "replace")
    except asyncio.IncompleteReadError:
        return "no reason given"


class BrowserSide:
    """The server half towards the browser, fed from WebSocket messages (which may split or join fields)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.stage = "version"

    def greeting(self) -> bytes:
        return VERSION

    def feed(self, data: bytes) -> tuple[bytes, bytes, bool]:
        """(reply to the browser, bytes left over for Xvnc, done)."""
        self.buffer += data
        if len(self.buffer) > 64:
            raise HandshakeFailed("oversized handshake from the browser")
        reply = b""
        if self.stage == "version" and len(self.buffer) >= 12:
            if self.buffer[:12] != VERSION:
                raise HandshakeFailed("the viewer must speak RFB 3.8")
            self.buffer = self.buffer[12:]
            self.stage = "security"
            reply += bytes([1, NONE])
        if self.stage == "security" and len(self.buffer) >= 1:
            if self.buffer[0] != NONE:
                raise HandshakeFailed("the viewer chose a security type not offered")
            self.buffer = self.buffer[1:]
            self.stage = "done"
            reply += struct.pack(">I", 0)
        if self.stage == "done":
            rest, self.buffer = self.buffer, b""
            return reply, rest, True
        return reply, b"", False
