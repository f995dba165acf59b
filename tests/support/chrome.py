"""Headless Chromium driven through Debian's chromedriver (the W3C WebDriver protocol over HTTP)."""
from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import requests

from tests.support.waiting import wait_until
from tests.support.web_app import free_port

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element key


class Chrome:
    """One browser profile (its own user-data dir): `with Chrome() as b: b.go(url)`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.profile = Path(tempfile.mkdtemp(prefix="asci-chrome-"))
        self.driver: subprocess.Popen | None = None
        self.base = ""

    def __enter__(self) -> "Chrome":
        self.driver = subprocess.Popen(["chromedriver", f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: _answers(url + "/status"), 20, "chromedriver")
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/lib/chromium/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", f"--user-data-dir={self.profile}", "--window-size=1024,768"]}}}}
        answer = requests.post(url + "/session", json=caps, timeout=60).json()["value"]
        if "sessionId" not in answer:
            self.__exit__()
            raise RuntimeError(f"chromedriver: {answer}")
        self.base = f"{url}/session/{answer['sessionId']}"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.base:
            try:
                requests.delete(self.base, timeout=30)
            except requests.RequestException:
                pass
        if self.driver is not None and self.driver.poll() is None:
            self.driver.terminate()
            self.driver.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        answer = requests.request(method, self.base + path, json=body if body is not None else ({} if method == "POST" else None),
                                  timeout=60).json()
        value = answer.get("value")
        if isinstance(value, dict) and "error" in value:
            raise RuntimeError(f"webdriver {path}: {value['error']}: {value.get('message', '')[:300]}")
        return value

    def go(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def url(self) -> str:
        return self._call("GET", "/url")

    def run(self, script: str, *args: Any) -> Any:
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        found = self._call("POST", "/element", {"using": "css selector", "value": css})
        if not isinstance(found, dict) or ELEMENT not in found:
            raise RuntimeError(f"webdriver: no element {css!r} ({found!r:.300})")
        return found[ELEMENT]

    def type(self, css: str, text: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/click", {})

    def resize(self, width: int, height: int) -> None:
        self._call("POST", "/window/rect", {"width": width, "height": height})

    def delete_cookies(self) -> None:
        """Log out as a person clearing cookies would; the HTTP cache stays."""
        self._call("DELETE", "/cookie")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


