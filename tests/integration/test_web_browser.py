"""End to end in headless Chromium: log in, start, connect, see desktop pixels through noVNC and the proxy.

The session is a real container started by the real launcher through the page; its
VNC server is a host Xvnc, so the launcher's connect — which does set a one-time
password in the session — is followed by pointing the Connection at the host Xvnc.
What this adds beside test_web_browser_desktop.py (the real desktop image): a hostile
environment title shown as text, and the page on a phone-sized screen.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import requests

from asci_core.config_base import Secret
from asci_core.launcher.vnc_password import PASSWORD_COMMAND
from tests.conftest import LABELS
from tests.integration.launcher_support import tiny_environment
from tests.integration.web_support import EVIL_TITLE, PASSWORDS, web_state
from tests.support.chrome import Chrome, wait_until
from tests.support.novnc import CANVAS_COLOURS
from tests.support.web_app import ServedApp, start_host_xvnc

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DOCKERFILE = f"""FROM asci/tiny:latest
RUN mkdir -p /usr/local/bin && printf '#!/bin/sh\\nread -r p\\n' > {PASSWORD_COMMAND} && chmod 755 {PASSWORD_COMMAND}
"""


class HostXvncLauncher:
    """The real launcher; only connect's answer is redirected to the host Xvnc."""

    def __init__(self, launcher, xvnc):
        self._launcher, self._xvnc = launcher, xvnc

    def __getattr__(self, name):
        return getattr(self._launcher, name)

    def connect(self, session_id, as_user=None):
        real = self._launcher.connect(session_id, as_user)
        return dataclasses.replace(real, address="127.0.0.1", port=self._xvnc.port,
                                   password=Secret(self._xvnc.password, "host Xvnc"))


@pytest.fixture
def password_image(docker_client, unique):
    tag = f"{unique('img')}:1"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=tag, rm=True, labels=LABELS)
    yield tag
    docker_client.images.remove(image.id, force=True)


def test_login_start_connect_and_see_the_desktop_in_chromium(stack, tmp_path, unique, password_image):
    xvnc = start_host_xvnc()
    state = web_state(tmp_path, str(stack.config.stack.docker.socket), {**LABELS, "asci.test.case": unique()},
                      environments=[tiny_environment(tmp_path / "fs", image=password_image, title=EVIL_TITLE)])
    real_launcher = state.launcher
    state.launcher = HostXvncLauncher(real_launcher, xvnc)
    try:
        with ServedApp(state) as app, Chrome() as browser:
            # A wrong password shows the generic error.
            browser.go(app.url + "/")
            wait_until(lambda: browser.url().endswith("/login"), 20, "the login page")
            browser.type("#user", "alice")
            browser.type("#password", "not-her-password")
            browser.click("button[type=submit]")
            wait_until(lambda: browser.run("return document.getElementById('error').textContent")
                       == "wrong user name or password", 20, "the generic login error")
            browser.go(app.url + "/login")
            browser.type("#user", "alice")
            browser.type("#password", PASSWORDS["alice"])
            browser.click("button[type=submit]")
            wait_until(lambda: browser.url() == app.url + "/", 20, "the page after login")

            # The hostile title is shown as text, and no element came from it.
            title = wait_until(lambda: browser.run(
                "const t = document.querySelector('#environments .title'); return t && t.textContent"), 20, "environments")
            assert title == EVIL_TITLE
            assert browser.run("return document.querySelectorAll('img').length") == 0

            # Phone-sized: nothing wider than the screen, the buttons within reach.
            browser.resize(390, 844)
            wait_until(lambda: browser.run("return window.innerWidth") <= 400, 10, "a phone-sized window")
            assert browser.run("return document.documentElement.scrollWidth <= window.innerWidth")
            button = browser.run("const r = document.querySelector('#environments button').getBoundingClientRect();"
                                 "return [r.right, r.height]")
            assert button[0] <= 390 and button[1] >= 40
            ARTIFACTS.mkdir(exist_ok=True)
            browser.screenshot(ARTIFACTS / "web-browser-phone.png")
            browser.resize(1024, 768)

            browser.click("#environments button")
            link = wait_until(lambda: browser.run(
                "const a = document.querySelector('#sessions .state-ready a'); return a && a.getAttribute('href')"),
                120, "a ready session with a Connect link")
            browser.go(app.url + link)
            colours = wait_until(lambda: (browser.run(CANVAS_COLOURS) or 0) > 1 and browser.run(CANVAS_COLOURS),
                                 60, "desktop pixels in the noVNC canvas")
            assert colours > 1
            assert browser.run("return document.getElementById('status').textContent") == "connected"
            ARTIFACTS.mkdir(exist_ok=True)
            browser.screenshot(ARTIFACTS / "web-browser-desktop.png")

            # The same link in a second, logged-out profile: the login page, no viewer, no token.
            with Chrome() as stranger:
                stranger.go(app.url + link)
                wait_until(lambda: stranger.url().endswith("/login"), 20, "the stranger's redirect")
            anonymous = requests.post(f"{app.url}/web/api/sessions/{link.rsplit('/', 1)[1]}/connect", timeout=30)
            assert anonymous.status_code == 401
    finally:
        for record in real_launcher.list():
            real_launcher.stop(record.id)
        real_launcher.close()
        xvnc.stop()
    assert (ARTIFACTS / "web-browser-desktop.png").stat().st_size > 1000
