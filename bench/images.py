"""The image family: cold and warm builds, sizes, `docker run` → first VNC login, idle memory of a desktop.

Builds go through `asci images build`'s own code (autobuild/images.py). Warm means every input
unchanged: a cache hit per image, no `docker build` at all. Cold (--cold, minutes: DIALS alone
downloads hundreds of packages) builds each Dockerfile with the same builder and arguments but no
layer cache, to throwaway names (asci-bench/NAME:cold, removed afterwards), so the family's own
images and content tags are left as they were.
Start-to-login: `docker run -d` of the warm desktop-base, then a VNC login retried every 10 ms
with the test suite's RFB client until it succeeds; the container is removed after each run.

    .venv/bin/python bench/images.py [--runs 20] [--cold] [--names desktop-base imaging ...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from asci_core.config import load_config  # noqa: E402
from asci_core.stack.manager import StackManager  # noqa: E402
from autobuild import builder  # noqa: E402
from autobuild.images import (PLATFORM, Family, platform_context, build_family, content_tag,  # noqa: E402
                             default_images_dir)
from registry.service import registry_access  # noqa: E402
from tests.integration.images_support import _QuietLog  # noqa: E402
from tests.integration.rfb_client import RfbClient  # noqa: E402
from asci_core.stack.docker_engine import docker_client

LABELS = {"asci.bench": "images"}
PASSWORD = "Bench-pw"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def warm_build(client, family: Family, names: list[str] | None) -> tuple[float, list]:
    started = time.monotonic()
    outcomes = build_family(client, family, names, tag="latest", push=False, log=_QuietLog())
    return time.monotonic() - started, outcomes


def cold_build(client, family: Family, outcomes: list) -> list[tuple[str, float]]:
    """Each image again without any cache, FROM the warm parents' content tags."""
    tags = {o.name: content_tag(o.inputs) for o in outcomes}
    took = []
    for o in outcomes:
        spec = family.specs[o.name]
        args = family.build_args(spec, tags[spec.parents[0]] if spec.parents else "latest")
        with tempfile.TemporaryDirectory() as scratch:
            context = spec.folder
            if o.name == PLATFORM:
                context = Path(scratch) / "context"
                platform_context(spec, context, _QuietLog())
            started = time.monotonic()
            builder.build_image(client, context=context, dockerfile=context / "Dockerfile",
                                ref=f"asci-bench/{o.name}:cold", build_args=args, labels=LABELS, log=_QuietLog(),
                                no_cache=True)
            took.append((o.name, time.monotonic() - started))
        client.images.remove(f"asci-bench/{o.name}:cold")
    return took


def login_once(ip: str) -> bool:
    try:
        with RfbClient(ip, timeout=2) as client:
            client.login(PASSWORD)
            return True
    except (OSError, ConnectionError):
        return False


def start_to_login(client, ref: str, secret: Path) -> tuple[float, float]:
    """(seconds from `docker run` to a successful VNC login, seconds the run call itself took)."""
    name = f"asci-bench-desktop-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    container = client.containers.run(
        ref, detach=True, name=name, labels=LABELS,
        environment={"ASCI_USER": "bench", "ASCI_UID": "4000", "ASCI_VNC_PASSWORD_FILE": "/run/secrets/vnc"},
        volumes={str(secret): {"bind": "/run/secrets/vnc", "mode": "ro"}})
    ran = time.monotonic() - started
    try:
        container.reload()
        ip = container.attrs["NetworkSettings"]["IPAddress"]
        deadline = started + 30
        while not login_once(ip):
            if time.monotonic() > deadline:
                raise RuntimeError("no VNC login within 30 s")
            time.sleep(0.01)
        return time.monotonic() - started, ran
    finally:
        container.remove(force=True)


def idle_memory(client, ref: str, secret: Path, settle: float) -> tuple[float, float, int]:
    """(anonymous MiB, cgroup usage MiB, processes) of one desktop SETTLE seconds after it is drawn."""
    container = client.containers.run(
        ref, detach=True, name=f"asci-bench-idle-{uuid.uuid4().hex[:8]}", labels=LABELS,
        environment={"ASCI_USER": "bench", "ASCI_UID": "4000", "ASCI_VNC_PASSWORD_FILE": "/run/secrets/vnc"},
        volumes={str(secret): {"bind": "/run/secrets/vnc", "mode": "ro"}})
    try:
        container.reload()
        ip = container.attrs["NetworkSettings"]["IPAddress"]
        deadline = time.monotonic() + 60
        while True:
            try:
                with RfbClient(ip, timeout=5) as rfb:
                    rfb.login(PASSWORD)
                    if rfb.full_frame().colours() > 16:
                        break
            except (OSError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the desktop was not drawn within 60 s")
            time.sleep(0.2)
        time.sleep(settle)  # a benchmark's measuring interval, not synchronisation
        stats = container.stats(stream=False)["memory_stats"]
        inner = stats.get("stats", {})
        anon = inner.get("anon", inner.get("rss", inner.get("total_rss", 0)))
        processes = len(container.top()["Processes"])
        return anon / 2**20, stats.get("usage", 0) / 2**20, processes
    finally:
        container.remove(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cold", action="store_true", help="also time a build without any cache")
    parser.add_argument("--names", nargs="*", help="images to build (default: all)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds a drawn desktop idles before measuring")
    args = parser.parse_args()

    config = load_config()
    if not StackManager(config).up().ok:
        print("the stack did not come up", file=sys.stderr)
        return 1
    client = docker_client(config.stack.docker.socket, timeout=1800)
    family = Family(default_images_dir(), registry_access(config), config.stack.base_image.name)

    took, outcomes = warm_build(client, family, args.names)
    print(f"warm build ({', '.join(o.name for o in outcomes)}): {took:.2f} s, "
          f"{sum(o.cached for o in outcomes)}/{len(outcomes)} cache hits")
    for o in outcomes:
        print(f"  {o.name:14} {client.images.get(o.ref).attrs['Size'] / 1e6:8.0f} MB  {o.ref}")

    if args.cold:
        cold = cold_build(client, family, outcomes)
        print(f"cold build, no layer cache: {sum(t for _, t in cold):.1f} s in all")
        for name, seconds in cold:
            print(f"  {name:14} {seconds:7.1f} s")

    base = family.ref("desktop-base", "latest")
    with tempfile.TemporaryDirectory() as scratch:
        secret = Path(scratch) / "vnc"
        secret.write_text(PASSWORD + "\n")
        secret.chmod(0o644)
        start_to_login(client, base, secret)  # one unmeasured run: page cache, first container on the bridge
        logins, runs = [], []
        for _ in range(args.runs):
            login, ran = start_to_login(client, base, secret)
            logins.append(login)
            runs.append(ran)
        print(f"docker run -> first VNC login over {args.runs} runs: p50 {statistics.median(logins):.3f} s, "
              f"p95 {percentile(logins, 95):.3f} s (docker run -d itself: p50 {statistics.median(runs):.3f} s)")
        anon, usage, processes = idle_memory(client, base, secret, args.settle)
        print(f"idle desktop after {args.settle:.0f} s: {anon:.0f} MiB anonymous, {usage:.0f} MiB cgroup usage, "
              f"{processes} processes")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
