"""The proxy's way to a session's VNC port: a just-started desktop that is not listening yet is
waited for (bounded), a port that never opens ends in the refusal."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

from asci_core.web.proxy import open_upstream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_vnc_port_that_opens_a_moment_later_is_reached():
    async def scenario() -> bytes:
        port = free_port()
        servers = []

        async def greet(reader, writer):
            writer.write(b"RFB 003.008\n")
            await writer.drain()
            writer.close()

        async def listen_late():
            servers.append(await asyncio.start_server(greet, "127.0.0.1", port))

        # The first attempt is refused (nothing listens); the listener appears 0.3 s later.
        asyncio.get_running_loop().call_later(0.3, lambda: asyncio.ensure_future(listen_late()))
        link = await open_upstream("127.0.0.1", port, timeout=10)
        try:
            return await link.readexactly(12)
        finally:
            link.close()
            servers[0].close()

    assert asyncio.run(scenario()) == b"RFB 003.008\n"


def test_a_vnc_port_that_never_opens_is_refused_within_the_timeout():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(open_upstream("127.0.0.1", port, timeout=0.5))
    assert 0.4 < time.monotonic() - started < 5


def test_the_link_hands_on_every_byte_in_order_and_reports_an_early_close():
    """The relay hands the kernel's reads on as views of buffers it then replaces: nothing may be
    overwritten or lost, however the stream was cut, while a slow reader lets the queue fill."""
    payload = bytes(range(256)) * (40 * 1024)  # 10 MiB, more than the link queues before pausing

    async def scenario() -> tuple[bytes, bytes, bool]:
        async def send(reader, writer):
            writer.write(b"RFB 003.008\n" + payload)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(send, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        link = await open_upstream("127.0.0.1", port, timeout=10)
        greeting = await link.readexactly(12)
        await asyncio.sleep(0.2)  # a slow browser: the link must pause reading, not buffer everything
        received = bytearray()
        while chunks := await link.chunks():
            for chunk in chunks:
                received += chunk
        try:
            await link.readexactly(1)
            early_close_reported = False
        except asyncio.IncompleteReadError:
            early_close_reported = True
        link.close()
        server.close()
        return greeting, bytes(received), early_close_reported

    greeting, received, early_close_reported = asyncio.run(scenario())
    assert greeting == b"RFB 003.008\n"
    assert len(received) == len(payload) and received == payload
    assert early_close_reported
