"""What the researcher's supplementary groups cost a desktop's start: `docker run` of desktop-base
with ASCI_GROUPS of N groups → first successful VNC login, N alternating within each round so
machine load spreads evenly. The entry point runs one `groupadd` per group before it drops root.

    .venv/bin/python bench/desktop_groups.py [--runs 7] [--groups 0 8 64 256] [--image REF]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from asci_core.config import load_config  # noqa: E402
from asci_core.stack.docker_engine import docker_client  # noqa: E402
from bench.images import PASSWORD, login_once  # noqa: E402
from registry.service import registry_access  # noqa: E402

LABELS = {"asci.bench": "desktop-groups"}


def start_to_login(client, ref: str, secret: Path, groups: int) -> float:
    env = {"ASCI_USER": "bench", "ASCI_UID": "4000", "ASCI_VNC_PASSWORD_FILE": "/run/secrets/vnc"}
    if groups:
        env["ASCI_GROUPS"] = ",".join(f"g{i}:{20000 + i}" for i in range(groups))
    started = time.monotonic()
    container = client.containers.run(ref, detach=True, name=f"asci-bench-groups-{uuid.uuid4().hex[:8]}",
                                      labels=LABELS, environment=env,
                                      volumes={str(secret): {"bind": "/run/secrets/vnc", "mode": "ro"}})
    try:
        container.reload()
        ip = container.attrs["NetworkSettings"]["IPAddress"]
        deadline = started + 60
        while not login_once(ip):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no VNC login within 60 s ({groups} groups)")
            time.sleep(0.01)
        return time.monotonic() - started
    finally:
        container.remove(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--groups", type=int, nargs="+", default=[0, 8, 64, 256])
    parser.add_argument("--image", help="default: the registry's bl/desktop-base:latest on the local engine")
    parser.add_argument("-c", "--config", default=None)
    args = parser.parse_args()
    config = load_config(args.config)
    ref = args.image or f"{registry_access(config).address}/bl/desktop-base:latest"
    client = docker_client(f"unix://{config.stack.docker.socket}", timeout=120)
    with tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp) / "vnc"
        secret.write_text(PASSWORD + "\n")
        secret.chmod(0o644)
        start_to_login(client, ref, secret, 0)  # warm-up: page cache, first container on the bridge
        times: dict[int, list[float]] = {n: [] for n in args.groups}
        for _ in range(args.runs):
            for n in args.groups:
                times[n].append(start_to_login(client, ref, secret, n))
    base = statistics.median(times[args.groups[0]])
    print(f"{'groups':>6}  {'median':>8}  {'min':>7}  {'max':>7}  vs {args.groups[0]} groups   ({args.runs} runs, {ref})")
    for n in args.groups:
        m = statistics.median(times[n])
        print(f"{n:>6}  {m:7.3f}s  {min(times[n]):6.3f}s  {max(times[n]):6.3f}s  {m - base:+.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
