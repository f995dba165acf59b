"""Issue 12's browser test on the real desktop: headless Chromium logs in, starts `desktop-base`
(the image `asci images build desktop-base` makes, `account: image`), connects through the proxy and
sees the XFCE desktop drawn in noVNC's canvas; the same Connect link in a logged-out profile is
refused, and a wrong password shows the generic error."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import requests

from asci_core.launcher.settings import DEFAULT_ENVIRONMENT, with_registry
from tests.conftest import LABELS
from tests.integration import images_support
from tests.integration.web_support import PASSWORDS, web_state
from tests.support.chrome import Chrome, wait_until
from tests.support.novnc import CANVAS_COLOURS
from tests.support.web_app import ServedApp

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOT = ARTIFACTS / "web-browser-real-desktop.png"


@pytest.fixture
def desktop_environment(stack, docker_client):
    """The embedded default environment on the image built (or found cached) by `asci images build`."""
    images_support.image(stack, docker_client, "desktop-base")
    env = with_registry(DEFAULT_ENVIRONMENT, stack.registry.address)
    assert env.image == images_support.family(stack).ref("desktop-base", images_support.TAG)
    return dataclasses.replace(env, cpus=1.0)  # the test node has 2 CPUs; other tests run beside it


def log_in(browser: Chrome, url: str, user: str, password: str) -> None:
    browser.go(url + "/login")
    browser.type("#user", user)
    browser.type("#password", password)
    browser.click("button[type=submit]")


def test_chromium_shows_the_real_desktop_through_the_proxy(stack, docker_client, tmp_path, unique,
                                                            desktop_environment):
    state = web_state(tmp_path, str(stack.config.stack.docker.socket), {**LABELS, "asci.test.case": unique()},
                      environments=[desktop_environment])
    launcher = state.launcher
    SCREENSHOT.unlink(missing_ok=True)
    try:
        with ServedApp(state) as app, Chrome() as browser:
            log_in(browser, app.url, "alice", "not-her-password")
            wait_until(lambda: browser.run("return document.getElementById('error').textContent")
                       == "wrong user name or password", 20, "the generic login error")
            assert browser.url().endswith("/login")

            log_in(browser, app.url, "alice", PASSWORDS["alice"])
            wait_until(lambda: browser.url() == app.url + "/", 20, "the page after login")
            wait_until(lambda: browser.run("const t = document.querySelector('#environments .title');"
                                           "return t && t.textContent") == "Debian desktop", 20, "the environment")
            browser.click("#environments button")
            link = wait_until(lambda: browser.run(
                "const a = document.querySelector('#sessions .state-ready a'); return a && a.getAttribute('href')"),
                120, "a ready session with a Connect link")
            session_id = link.rsplit("/", 1)[1]
            record = launcher.show(session_id, "alice")
            container = docker_client.containers.get(record.container_id)
            assert container.attrs["Config"]["Image"] == desktop_environment.image

            browser.go(app.url + link)
            colours = wait_until(lambda: (browser.run(CANVAS_COLOURS) or 0) > 8 and browser.run(CANVAS_COLOURS),
                                 90, "the XFCE desktop drawn in the noVNC canvas")
            assert browser.run("return document.getElementById('status').textContent") == "connected"
            ARTIFACTS.mkdir(exist_ok=True)
            browser.screenshot(SCREENSHOT)
            assert colours > 8

            # The same link in a second, logged-out profile: the login page; the connect call is refused.
            with Chrome() as stranger:
                stranger.go(app.url + link)
                wait_until(lambda: stranger.url().endswith("/login"), 20, "the stranger's redirect")
                assert stranger.run("return document.querySelector('#screen canvas')") is None
            anonymous = requests.post(f"{app.url}/web/api/sessions/{session_id}/connect", timeout=30)
            assert anonymous.status_code == 401
            upgrade = requests.get(f"{app.url}/web/proxy/{session_id}", timeout=30, headers={
                "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": app.url})
            assert upgrade.status_code == 403
    finally:
        for record in launcher.list():
            launcher.stop(record.id)
        launcher.close()
    assert SCREENSHOT.stat().st_size > 10000
