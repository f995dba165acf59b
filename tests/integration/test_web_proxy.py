"""The viewer proxy: who may open the WebSocket, and the relay to a real Xvnc with the proxy's own VNC login.

The session is real (a container on the local engine, READY in the launcher); the VNC
server is a real TigerVNC Xvnc on the host, because the desktop image is built on
another branch: its Connection is handed to the token store the way the connect
endpoint does after `Launcher.connect`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import struct
import time
from pathlib import Path

import aiohttp
import pytest
import requests

from asci_core.config_base import Secret
from asci_core.launcher.sessions import Connection
from asci_core.launcher.vnc_password import PASSWORD_COMMAND
from tests.conftest import LABELS
from tests.integration.launcher_support import tiny_environment, wait_for
from tests.integration.web_support import logged_in, web_state
from tests.support.web_app import ServedApp, start_host_xvnc

pytestmark = pytest.mark.integration
PIPELINE = Path(__file__).resolve().parents[2] / "logging/elasticsearch/pipelines/asci-logs-access.json"
# A stand-in for the desktop image's password command: it reads the password and keeps nothing.
DOCKERFILE = f"""FROM asci/tiny:latest
RUN mkdir -p /usr/local/bin && printf '#!/bin/sh\\nread -r p\\n' > {PASSWORD_COMMAND} && chmod 755 {PASSWORD_COMMAND}
"""


@pytest.fixture(scope="module")
def xvnc():
    server = start_host_xvnc()
    yield server
    server.stop()


@pytest.fixture
def password_image(docker_client, unique):
    tag = f"{unique('img')}:1"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=tag, rm=True, labels=LABELS)
    yield tag
    docker_client.images.remove(image.id, force=True)


@pytest.fixture
def served(stack, tmp_path, unique, password_image):
    state = web_state(tmp_path, str(stack.config.stack.docker.socket), {**LABELS, "asci.test.case": unique()},
                      environments=[tiny_environment(tmp_path / "fs", image=password_image)], max_viewers_per_user=2)
    with ServedApp(state) as app:
        yield app
    for record in state.launcher.list():
        state.launcher.stop(record.id)
    state.launcher.close()


def grant_to(served, xvnc, user: str, session: str, password: str | None = None) -> str:
    connection = Connection(session, "local", "127.0.0.1", xvnc.port, Secret(password or xvnc.password, "test"))
    return served.state.tokens.issue(user, session, connection)


async def open_viewer(served, session: str, token: str | None, cookie: str | None, origin: str | None = None):
    headers = {"Origin": origin or served.url} if origin != "" else {}
    if cookie:
        headers["Cookie"] = f"asci_session={cookie}"
    client = aiohttp.ClientSession()
    try:
        ws = await client.ws_connect(f"{served.url.replace('http', 'ws')}/web/proxy/{session}", headers=headers,
                                     protocols=(f"asci-token.{token}",) if token else ())
    except BaseException:
        await client.close()
        raise
    return client, ws


async def refused(served, session: str, token: str | None, cookie: str | None, origin: str | None = None) -> int:
    try:
        client, ws = await open_viewer(served, session, token, cookie, origin)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    await client.close()
    return 101


class Reader:
    """RFB bytes from WebSocket messages, which may split or join protocol fields."""

    def __init__(self, ws):
        self.ws, self.buffer = ws, b""

    async def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            msg = await asyncio.wait_for(self.ws.receive(), 10)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            self.buffer += msg.data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


def test_the_viewer_reaches_a_real_xvnc_without_ever_holding_its_password(served, xvnc, caplog):
    caplog.set_level(logging.INFO)
    browser, csrf = logged_in(served.url, "alice")
    created = browser.post(f"{served.url}/web/api/sessions", json={"environment": "tiny"},
                           headers={"X-CSRF-Token": csrf}, timeout=120)
    assert created.status_code == 201, created.text
    session = created.json()["id"]
    # The page's connect: a token and where to use it, and no password anywhere in the answer.
    connect = browser.post(f"{served.url}/web/api/sessions/{session}/connect", headers={"X-CSRF-Token": csrf},
                           timeout=60)
    assert connect.status_code == 200 and set(connect.json()) == {"token", "expires_in", "websocket"}
    assert connect.json()["websocket"] == f"/web/proxy/{session}"
    before = served.state.launcher.show(session).last_activity
    token = grant_to(served, xvnc, "alice", session)

    async def view() -> tuple[int, int, int]:
        client, ws = await open_viewer(served, session, token, browser.cookies["asci_session"])
        try:
            assert ws.protocol == f"asci-token.{token}"
            rfb = Reader(ws)
            assert await rfb.exactly(12) == b"RFB 003.008\n"
            await ws.send_bytes(b"RFB 003.008\n")
            assert await rfb.exactly(2) == b"\x01\x01"  # one type: None — no VNC password for the browser
            await ws.send_bytes(b"\x01")
            assert await rfb.exactly(4) == b"\x00\x00\x00\x00"
            await ws.send_bytes(b"\x01")  # ClientInit, relayed to Xvnc
            width, height = struct.unpack(">HH", await rfb.exactly(4))
            await rfb.exactly(16)
            (name_length,) = struct.unpack(">I", await rfb.exactly(4))
            name = await rfb.exactly(name_length)
            await ws.send_bytes(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))  # full update request
            message_type = (await rfb.exactly(1))[0]
            return width, height, message_type, name
        finally:
            await ws.close()
            await client.close()

    width, height, message_type, name = asyncio.run(view())
    assert (width, height, message_type) == (640, 480, 0) and b"asci-test" in name
    activity = served.state.activity[session]
    assert activity.bytes_out > 24 and activity.bytes_in >= 12 + 1 + 1 + 10
    wait_for(lambda: served.state.launcher.show(session).last_activity > before, 10,
             "the viewer's activity reported to the launcher (idle culling)")
    assert xvnc.password not in caplog.text and token not in caplog.text
    # The server writes the line when its handler ends, just after the client's close: wait for it.
    lines = wait_for(lambda: [r for r in caplog.records
                              if r.name == "asci.proxy" and f"/web/proxy/{session}" in r.getMessage()],
                     10, "the proxy's access line")
    assert lines[-1].fields["status"] == 101 and lines[-1].fields["user"] == "alice"
    # The access pipeline parses the line into client, user, method, path, status and duration.
    pipeline = json.loads(PIPELINE.read_text())
    search = served_search_url()
    parsed = requests.post(f"{search}/_ingest/pipeline/_simulate", timeout=30,
                           json={"pipeline": pipeline, "docs": [{"_source": {"message": lines[-1].getMessage()}}]})
    doc = parsed.json()["docs"][0]["doc"]["_source"]
    assert doc["source"]["ip"] == "127.0.0.1" and doc["user"]["name"] == "alice"
    assert doc["http"]["request"]["method"] == "GET" and doc["url"]["original"] == f"/web/proxy/{session}"
    assert doc["http"]["response"]["status_code"] == 101 and doc["event"]["duration"] > 0


def served_search_url() -> str:
    from asci_core.config import load_config
    return load_config().stack.search.url.rstrip("/")


def test_viewer_upgrades_without_the_right_token_login_or_origin_are_403(served, xvnc, caplog):
    caplog.set_level(logging.INFO)
    alice, csrf = logged_in(served.url, "alice")
    bob, _ = logged_in(served.url, "bob")
    session = served.state.launcher.create("alice", "tiny").id
    cookie, bob_cookie = alice.cookies["asci_session"], bob.cookies["asci_session"]

    async def scenario() -> dict[str, int]:
        out = {"no token": await refused(served, session, None, cookie),
               "unknown token": await refused(served, session, "x" * 43, cookie)}
        token = grant_to(served, xvnc, "alice", session)
        out["no cookie"] = await refused(served, session, token, None)
        out["spent by the refused try"] = await refused(served, session, token, cookie)
        token = grant_to(served, xvnc, "alice", session)
        out["other user's cookie"] = await refused(served, session, token, bob_cookie)
        token = grant_to(served, xvnc, "alice", session)
        out["other origin"] = await refused(served, session, token, cookie, origin="http://evil.example")
        token = grant_to(served, xvnc, "alice", session)
        out["no origin"] = await refused(served, session, token, cookie, origin="")
        token = grant_to(served, xvnc, "alice", session)
        out["first use"] = await refused(served, session, token, cookie)
        out["replayed"] = await refused(served, session, token, cookie)
        token = grant_to(served, xvnc, "alice", session)
        clock = served.state.tokens.clock
        served.state.tokens.clock = lambda: clock() + 61
        try:
            out["expired"] = await refused(served, session, token, cookie)
        finally:
            served.state.tokens.clock = clock
        token = grant_to(served, xvnc, "alice", session)
        out["traversal"] = await refused(served, "..%2F..%2Fetc", token, cookie)
        return out

    results = asyncio.run(scenario())
    assert results == {"no token": 403, "unknown token": 403, "no cookie": 403, "spent by the refused try": 403,
                       "other user's cookie": 403, "other origin": 403, "no origin": 403, "first use": 101, "replayed": 403,
                       "expired": 403, "traversal": 403}
    # A token for a session that is then stopped: stopping revokes it, and a stopped session is refused anyway.
    token = grant_to(served, xvnc, "alice", session)
    stop = alice.delete(f"{served.url}/web/api/sessions/{session}", headers={"X-CSRF-Token": csrf}, timeout=60)
    assert stop.status_code == 200 and stop.json()["state"] == "stopped"
    assert asyncio.run(refused(served, session, token, cookie)) == 403
    late = grant_to(served, xvnc, "alice", session)
    assert asyncio.run(refused(served, session, late, cookie)) == 403
    reasons = [r.fields["reason"] for r in caplog.records if r.getMessage() == "viewer refused"]
    assert "session is stopped" in reasons and "expired token" in reasons and "not logged in" in reasons
    assert not any(t in caplog.text for t in (token, late))


def test_viewers_per_user_are_capped_and_idle_viewers_closed(served, xvnc):
    alice, _ = logged_in(served.url, "alice")
    session = served.state.launcher.create("alice", "tiny").id
    cookie = alice.cookies["asci_session"]

    async def scenario() -> tuple[int, bool]:
        held = [await open_viewer(served, session, grant_to(served, xvnc, "alice", session), cookie) for _ in range(2)]
        try:
            third = await refused(served, session, grant_to(served, xvnc, "alice", session), cookie)
        finally:
            for client, ws in held:
                await ws.close()
                await client.close()
        deadline = time.monotonic() + 5
        while served.state.viewers.get("alice") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        fourth = await refused(served, session, grant_to(served, xvnc, "alice", session), cookie)
        return third, fourth

    assert asyncio.run(scenario()) == (429, 101)

    served.state.settings = dataclasses.replace(served.state.settings, viewer_idle_timeout=0.3)

    async def idle() -> aiohttp.WSMsgType:
        client, ws = await open_viewer(served, session, grant_to(served, xvnc, "alice", session), cookie)
        try:
            while True:  # the greeting, then nothing from us: the proxy must close within the bound
                msg = await asyncio.wait_for(ws.receive(), 10)
                if msg.type != aiohttp.WSMsgType.BINARY:
                    return msg.type
        finally:
            await client.close()

    assert asyncio.run(idle()) in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
