"""desktop-base from `docker run` to a finished desktop: Xvnc listening, first drawn frame, drawing done.

Each run starts the image as the launcher does (researcher's ids and a password file bound
read-only), then times, from just before `docker run`:
  listen  - the first TCP connection to port 5901 that Xvnc accepts (polled every 10 ms);
  login   - the first completed VNC login (the test suite's RFB client);
  drawn   - the first framebuffer holding more than 16 colours (wallpaper, icons or panel);
  stable  - the last framebuffer change before QUIET seconds without any (the desktop finished
            drawing), read from the server's incremental updates.
The container is removed after each run. --mount SRC:DST binds a file over the image's own
(read-only), to try a change to the session scripts before building it in.

    .venv/bin/python bench/desktop_start.py [--runs 10] [--image REF] [--quiet 3] [--mount SRC:DST ...]
"""
from __future__ import annotations

import argparse
import select
import socket
import statistics
import sys
import tempfile
import time
import uuid
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from asci_core.config import load_config  # noqa: E402
from asci_core.stack.docker_engine import docker_client  # noqa: E402
from tests.integration.rfb_client import RfbClient  # noqa: E402

LABELS = {"asci.bench": "desktop-start"}
PASSWORD = "Bench-pw"
DRAWN_COLOURS = 16


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def colours(frame: bytearray) -> int:
    pixels = array("I")
    pixels.frombytes(bytes(frame))
    return len(set(pixels))


def wait_listening(ip: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, 5901), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("Xvnc did not listen within the deadline")


def login(ip: str, deadline: float) -> RfbClient:
    while time.monotonic() < deadline:
        try:
            rfb = RfbClient(ip, timeout=5)
        except OSError:
            time.sleep(0.01)
            continue
        try:
            rfb.login(PASSWORD)
            return rfb
        except (OSError, ConnectionError):
            rfb.close()
            time.sleep(0.01)
    raise RuntimeError("no VNC login within the deadline")


def watch(rfb: RfbClient, started: float, quiet: float, deadline: float) -> tuple[float, float]:
    """(drawn, stable) seconds after STARTED, following incremental updates until QUIET seconds pass without one."""
    drawn = None
    last_change = time.monotonic()
    last = bytes(rfb._frame)
    rfb.request(incremental=False)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([rfb.sock], [], [], quiet)
        if not ready:
            if drawn is not None:
                return drawn - started, last_change - started
            continue  # nothing drawn yet: keep waiting for the desktop
        rfb.next_update(time.monotonic() + 10)
        now = time.monotonic()
        current = bytes(rfb._frame)
        if current != last:
            last, last_change = current, now
            if drawn is None and colours(rfb._frame) > DRAWN_COLOURS:
                drawn = now
        rfb.request(incremental=True)
    raise RuntimeError("the desktop did not finish drawing within the deadline")


def one_run(client, ref: str, secret: Path, mounts: dict, quiet: float) -> dict[str, float]:
    volumes = {str(secret): {"bind": "/run/secrets/vnc", "mode": "ro"}}
    volumes.update({src: {"bind": dst, "mode": "ro"} for src, dst in mounts.items()})
    started = time.monotonic()
    container = client.containers.run(
        ref, detach=True, name=f"asci-bench-dstart-{uuid.uuid4().hex[:8]}", labels=LABELS,
        environment={"ASCI_USER": "bench", "ASCI_UID": "4000", "ASCI_VNC_PASSWORD_FILE": "/run/secrets/vnc"},
        volumes=volumes)
    try:
        container.reload()
        ip = container.attrs["NetworkSettings"]["IPAddress"]
        deadline = started + 60
        wait_listening(ip, deadline)
        listen = time.monotonic() - started
        rfb = login(ip, deadline)
        with rfb:
            logged_in = time.monotonic() - started
            drawn, stable = watch(rfb, started, quiet, deadline)
        return {"listen": listen, "login": logged_in, "drawn": drawn, "stable": stable}
    finally:
        container.remove(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--image", default="127.0.0.1:5000/bl/desktop-base:latest")
    parser.add_argument("--quiet", type=float, default=3.0, help="seconds without a change that end the drawing")
    parser.add_argument("--mount", action="append", default=[], metavar="SRC:DST")
    args = parser.parse_args()
    mounts = {}
    for spec in args.mount:
        src, _, dst = spec.partition(":")
        mounts[str(Path(src).resolve())] = dst
    client = docker_client(load_config().stack.docker.socket)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        secret = Path(scratch) / "vnc"
        secret.write_text(PASSWORD + "\n")
        secret.chmod(0o644)
        for i in range(args.runs):
            r = one_run(client, args.image, secret, mounts, args.quiet)
            results.append(r)
            print(f"run {i + 1}: " + "  ".join(f"{k} {v:.2f}s" for k, v in r.items()), flush=True)
    print(f"{args.image}, {args.runs} runs")
    for key in ("listen", "login", "drawn", "stable"):
        values = [r[key] for r in results]
        print(f"  {key:7s} p50 {statistics.median(values):.2f}s  p90 {percentile(values, 90):.2f}s  "
              f"min {min(values):.2f}s  max {max(values):.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
