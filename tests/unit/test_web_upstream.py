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
        reader, writer = await open_upstream("127.0.0.1", port, timeout=10)
        try:
            return await reader.readexactly(12)
        finally:
            writer.close()
            servers[0].close()

    assert asyncio.run(scenario()) == b"RFB 003.008\n"


def test_a_vnc_port_that_never_opens_is_refused_within_the_timeout():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(open_upstream("127.0.0.1", port, timeout=0.5))
    assert 0.4 < time.monotonic() - started < 5
