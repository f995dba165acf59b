"""X authority files, written and read without the `xauth` program.

The format (Xau): entries of family (16-bit big-endian), then address, display number, auth name and
auth data, each a 16-bit length and its bytes. A session's container has another hostname than the
3DX's host, so its copy of the cookie is a FamilyWild entry, which matches any host.
"""
from __future__ import annotations

import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from asci_core.errors import AsciError

FAMILY_WILD = 0xFFFF
MIT_MAGIC_COOKIE = b"MIT-MAGIC-COOKIE-1"
COOKIE_BYTES = 16


class XauthError(AsciError, ValueError):
    """An authority file that is not in the Xau format."""


@dataclass(frozen=True)
class XauthEntry:
    family: int
    address: bytes
    number: bytes  # the display number as text, e.g. b"55"
    name: bytes
    data: bytes


def new_cookie() -> bytes:
    return secrets.token_bytes(COOKIE_BYTES)


def wild_entry(display: int, cookie: bytes) -> XauthEntry:
    return XauthEntry(FAMILY_WILD, b"", str(display).encode(), MIT_MAGIC_COOKIE, cookie)


def encode(entries: list[XauthEntry]) -> bytes:
    out = bytearray()
    for entry in entries:
        out += struct.pack(">H", entry.family)
        for part in (entry.address, entry.number, entry.name, entry.data):
            if len(part) > 0xFFFF:
                raise XauthError("an authority field longer than 65535 bytes")
            out += struct.pack(">H", len(part)) + part
    return bytes(out)


def decode(data: bytes) -> list[XauthEntry]:
    entries, at = [], 0

    def take(count: int) -> bytes:
        nonlocal at
        if at + count > len(data):
            raise XauthError(f"authority data ends inside an entry (offset {at})")
        chunk = data[at:at + count]
        at += count
        return chunk

    while at < len(data):
        family = struct.unpack(">H", take(2))[0]
        parts = [take(struct.unpack(">H", take(2))[0]) for _ in range(4)]
        entries.append(XauthEntry(family, *parts))
    return entries


def write_private(path: Path, entries: list[XauthEntry], uid: int | None = None, gid: int | None = None) -> None:
    """Write PATH readable by its owner only (UID/GID when given) — created 0600, never world-readable first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = path.with_name(f".{path.name}.new")
    scratch.unlink(missing_ok=True)
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(encode(entries))
        if uid is not None:
            os.chown(scratch, uid, gid if gid is not None else uid)
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


def cookie_of(path: Path, display: int) -> bytes:
    """The MIT-MAGIC-COOKIE-1 for DISPLAY in the authority file PATH."""
    number = str(display).encode()
    for entry in decode(path.read_bytes()):
        if entry.name == MIT_MAGIC_COOKIE and entry.number == number:
            return entry.data
    raise XauthError(f"{path} holds no cookie for display :{display}")
