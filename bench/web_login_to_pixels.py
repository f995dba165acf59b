"""Login → desktop pixels visible in the browser, against a running `asci serve`, warm image.

    .venv/bin/asci serve &        # the embedded defaults: http://127.0.0.1:8080/, user `researcher`
    .venv/bin/python bench/web_login_to_pixels.py [--runs 10] [--url http://127.0.0.1:8080]
        [--password-file /var/lib/asci/web/first-run-password] [--environment desktop-base]
        [--screenshot test-artifacts/bench-desktop.png] [--warm-browser]

Each run opens a fresh headless Chromium profile (Debian's chromium through chromedriver, not
timed), so noVNC's ~40 modules come over the network every time (a first visit); with
--warm-browser one profile serves every run and only its cookies are deleted between runs (a
returning researcher: logged out, HTTP cache kept). Each run times what a person does: open /login, type the user name and password, submit,
click Start on the environment, wait for its Connect link, open the viewer, and wait until
noVNC's canvas shows the desktop (more than 8 distinct colours on a sample grid). The session is
stopped through the page's API afterwards (not timed). The image must already be on the node
(`asci images build desktop-base --push`); the first run after serve's start is timed like the rest.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.images import percentile  # noqa: E402
from tests.support.chrome import Chrome, wait_until  # noqa: E402
from tests.support.novnc import CANVAS_COLOURS  # noqa: E402

DESKTOP_COLOURS = 8
STOP_SESSION = """
const csrf = document.querySelector('meta[name="csrf-token"]').content;
return fetch('/web/api/sessions/' + arguments[0], {method: 'DELETE', credentials: 'same-origin',
             headers: {'X-CSRF-Token': csrf}}).then(r => r.status);
"""
OPEN_SESSIONS = """
return fetch('/web/api/overview', {credentials: 'same-origin'}).then(r => r.json())
  .then(o => o.sessions.filter(s => s.state !== 'stopped').length);
"""


def one_run(browser: Chrome, url: str, user: str, password: str, environment: str,
            screenshot: Path | None) -> dict[str, float]:
    started = time.monotonic()
    browser.go(url + "/login")
    browser.type("#user", user)
    browser.type("#password", password)
    browser.click("button[type=submit]")
    wait_until(lambda: browser.url() == url + "/", 30, "the page after login")
    logged_in = time.monotonic()
    start_button = f'#environments [data-environment="{environment}"] button'
    wait_until(lambda: browser.run(f"return !!document.querySelector('{start_button}')"), 30, "the environment")
    browser.click(start_button)
    link = wait_until(lambda: browser.run(
        "const a = document.querySelector('#sessions .state-ready a'); return a && a.getAttribute('href')"),
        120, "a ready session")
    ready = time.monotonic()
    browser.go(url + link)
    wait_until(lambda: (browser.run(CANVAS_COLOURS) or 0) > DESKTOP_COLOURS, 120, "desktop pixels")
    drawn = time.monotonic()
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        browser.screenshot(screenshot)
    session = link.rsplit("/", 1)[1]
    status = browser.run(STOP_SESSION, session)
    if status != 200:
        raise RuntimeError(f"stopping session {session}: HTTP {status}")
    wait_until(lambda: browser.run(OPEN_SESSIONS) == 0, 60, "the session stopped")
    return {"login": logged_in - started, "start": ready - logged_in, "pixels": drawn - ready, "total": drawn - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--user", default=None, help="default: the user named in the password file")
    parser.add_argument("--password-file", type=Path, default=Path("/var/lib/asci/web/first-run-password"))
    parser.add_argument("--environment", default="desktop-base")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--screenshot", type=Path, default=None, help="PNG of the first run's desktop")
    parser.add_argument("--warm-browser", action="store_true", help="one profile for all runs, cookies deleted")
    args = parser.parse_args()
    try:
        credentials = yaml.safe_load(args.password_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        print(f"bench: cannot read {args.password_file}: {exc}", file=sys.stderr)
        return 2
    user = args.user or credentials["user"]
    url = args.url.rstrip("/")
    rows = []
    shared = Chrome().__enter__() if args.warm_browser else None
    try:
        for index in range(args.runs):
            if shared is not None:
                shared.delete_cookies()
            browser = shared or Chrome().__enter__()
            try:
                row = one_run(browser, url, user, str(credentials["password"]), args.environment,
                              args.screenshot if index == 0 else None)
            finally:
                if shared is None:
                    browser.__exit__(None, None, None)
            rows.append(row)
            print(f"run {index + 1}: login {row['login']:.2f} s, start→ready {row['start']:.2f} s, "
                  f"connect→pixels {row['pixels']:.2f} s, total {row['total']:.2f} s", flush=True)
    finally:
        if shared is not None:
            shared.__exit__(None, None, None)
    for key in ("login", "start", "pixels", "total"):
        values = [r[key] for r in rows]
        print(f"{key:7s} p50 {statistics.median(values):.2f} s  p90 {percentile(values, 90):.2f} s  "
              f"min {min(values):.2f} s  max {max(values):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
