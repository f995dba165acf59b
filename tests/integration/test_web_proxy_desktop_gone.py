"""A desktop that goes away while its viewer relays (the container killed under it): the proxy ends
the WebSocket with a normal close, logs one line for it, and nothing raises — no traceback in what
the served app writes."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
import time

import aiohttp
import pytest

from asci_core.launcher.settings import DEFAULT_ENVIRONMENT, with_registry
from tests.conftest import LABELS
from tests.integration import images_support
from tests.integration.web_support import logged_in, web_state
from tests.support.web_app import ServedApp

pytestmark = pytest.mark.integration


@pytest.fixture
def desktop_environment(stack, docker_client):
    images_support.image(stack, docker_client, "desktop-base")
    env = with_registry(DEFAULT_ENVIRONMENT, stack.registry.address)
    return dataclasses.replace(env, cpus=1.0)


class Rfb:
    """The browser's side of RFB over the WebSocket (messages may split or join fields)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self.buffer = ws, b""

    async def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            msg = await asyncio.wait_for(self.ws.receive(), 30)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            self.buffer += msg.data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


def test_a_desktop_killed_mid_relay_ends_the_websocket_cleanly_with_one_line(stack, docker_client, tmp_path,
                                                                           unique, desktop_environment,
                                                                           caplog, capfd):
    caplog.set_level(logging.DEBUG)  # every logger: aiohttp's and asyncio's tracebacks would land here
    state = web_state(tmp_path, str(stack.config.stack.docker.socket), {**LABELS, "asci.test.case": unique()},
                      environments=[desktop_environment])
    launcher = state.launcher
    try:
        with ServedApp(state) as app:
            browser, csrf = logged_in(app.url, "alice")
            created = browser.post(f"{app.url}/web/api/sessions", json={"environment": "desktop-base"},
                                   headers={"X-CSRF-Token": csrf}, timeout=120)
            assert created.status_code == 201, created.text
            session = created.json()["id"]
            grant = browser.post(f"{app.url}/web/api/sessions/{session}/connect", headers={"X-CSRF-Token": csrf},
                                 timeout=60).json()
            container = docker_client.containers.get(launcher.show(session).container_id)

            async def relay_then_kill() -> tuple[aiohttp.WSMsgType, int | None, int, float]:
                async with aiohttp.ClientSession() as client:
                    async with client.ws_connect(
                            f"{app.url.replace('http', 'ws')}{grant['websocket']}",
                            protocols=(f"asci-token.{grant['token']}",),
                            headers={"Origin": app.url, "Cookie": f"asci_session={browser.cookies['asci_session']}"},
                    ) as ws:
                        rfb = Rfb(ws)
                        assert await rfb.exactly(12) == b"RFB 003.008\n"
                        await ws.send_bytes(b"RFB 003.008\n")
                        assert await rfb.exactly(2) == b"\x01\x01"
                        await ws.send_bytes(b"\x01")
                        assert await rfb.exactly(4) == b"\x00\x00\x00\x00"
                        await ws.send_bytes(b"\x01")  # ClientInit: from here on the proxy only relays
                        width, height = struct.unpack(">HH", await rfb.exactly(4))
                        await rfb.exactly(16)
                        (name_length,) = struct.unpack(">I", await rfb.exactly(4))
                        await rfb.exactly(name_length)
                        await ws.send_bytes(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
                        assert (await rfb.exactly(1))[0] == 0  # a FramebufferUpdate: relaying

                        await asyncio.get_running_loop().run_in_executor(None, container.kill)
                        killed = time.monotonic()
                        frames = 0
                        while True:  # the proxy must end the WebSocket on its own, within a bound
                            msg = await asyncio.wait_for(ws.receive(), 30)
                            if msg.type != aiohttp.WSMsgType.BINARY:
                                return msg.type, ws.close_code, frames, time.monotonic() - killed
                            frames += 1
                            # Input keeps flowing as a person's would, into the vanishing desktop.
                            await ws.send_bytes(struct.pack(">BBHHHH", 3, 1, 0, 0, width, height))

            kind, code, _, took = asyncio.run(relay_then_kill())
            assert kind in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            assert code == aiohttp.WSCloseCode.OK and took < 30

            def ended_lines() -> list[logging.LogRecord]:
                return [r for r in caplog.records if getattr(r, "fields", {}).get("session") == session
                        and r.getMessage().startswith("viewer") and r.getMessage() != "viewer connected"]

            deadline = time.monotonic() + 10
            while not ended_lines() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [r.getMessage() for r in ended_lines()] == ["viewer disconnected"]
    finally:
        for record in launcher.list():
            launcher.stop(record.id)
        launcher.close()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
