"""The proxy's TCP connection to a session's Xvnc, as an asyncio protocol.

During the RFB handshake it is read field by field (`readexactly`, as rfb.py expects of a
stream). Once relaying, the kernel reads into a buffer of this link's own, and a large read
is handed on to the WebSocket as a view of that buffer (a fresh buffer takes its place), so
a desktop's update is not copied in user space at all: the relay's throughput is bound by
copies and syscalls. A small read is copied out instead, so small updates do not each pin a
whole buffer.
Reading pauses while more than QUEUE_LIMIT bytes wait for a slow browser, so a viewer's
memory stays bounded whatever the desktop sends.
"""
from __future__ import annotations

import asyncio
from collections import deque

QUEUE_LIMIT = 256 * 1024
READ_SIZE = 256 * 1024
HAND_OVER = 16 * 1024  # reads at least this large leave as a view; smaller ones are copied


class DesktopLink(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._chunks: deque[bytes | memoryview] = deque()
        self._buffer = memoryview(bytearray(READ_SIZE))
        self._queued = 0
        self._reading_paused = False
        self._arrived: asyncio.Future | None = None
        self._writable: asyncio.Future | None = None
        self._write_paused = False
        self._lost = False

    # --- asyncio's side ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        if nbytes >= HAND_OVER:
            data: bytes | memoryview = self._buffer[:nbytes]
            self._buffer = memoryview(bytearray(READ_SIZE))
        else:
            data = bytes(self._buffer[:nbytes])
        self._chunks.append(data)
        self._queued += len(data)
        if self._queued > QUEUE_LIMIT and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._lost = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._wake_reader()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _wake_reader(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    # --- the proxy's side -------------------------------------------------

    async def _wait_for_data(self) -> None:
        self._arrived = asyncio.get_running_loop().create_future()
        try:
            await self._arrived
        finally:
            self._arrived = None

    async def readexactly(self, n: int) -> bytes:
        """N bytes of the handshake; IncompleteReadError when the desktop closes first."""
        while self._queued < n:
            if self._lost:
                partial = b"".join(self._chunks)
                self._chunks.clear()
                self._queued = 0
                raise asyncio.IncompleteReadError(partial, n)
            await self._wait_for_data()
        joined = b"".join(self._chunks)
        self._chunks.clear()
        if len(joined) > n:
            self._chunks.append(joined[n:])
        self._queued = len(joined) - n
        self._resume_if_room()
        return joined[:n]

    async def chunks(self) -> list[bytes | memoryview]:
        """Everything received since the last call, as received; [] once the desktop has closed."""
        while not self._chunks:
            if self._lost:
                return []
            await self._wait_for_data()
        out = list(self._chunks)
        self._chunks.clear()
        self._queued = 0
        self._resume_if_room()
        return out

    def _resume_if_room(self) -> None:
        if self._reading_paused and self._queued <= QUEUE_LIMIT and not self._lost:
            self._reading_paused = False
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("the desktop closed the connection")
        while self._write_paused and not self._lost:
            self._writable = asyncio.get_running_loop().create_future()
            try:
                await self._writable
            finally:
                self._writable = None

    def is_closing(self) -> bool:
        return self._lost or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
