"""glxspheres frame rates: through VirtualGL on one shared software 3DX vs the 2DX's own software GL.

One development 3DX (the `gpu.three_dx` stack part on a free display) and two desktop-gpu sessions
wired as the launcher will wire them (the socket alone, a per-session cookie copy). In each round,
interleaved: one session through VirtualGL; two sessions at once through VirtualGL on the same 3DX;
one session on its Xvnc's own GLX (Mesa llvmpipe); two sessions at once on their own GLX. Each run is
`glxspheres64 -f FRAMES` (window 640x480, the default); the figure is its reported frames/sec after
the first report (start-up). No GPU here: rendering is llvmpipe either way, so the figure shows what
the wiring costs (the read-back into the 2DX), not a GPU's gain.

    .venv/bin/python bench/gpu_desktop.py [--rounds 3] [--frames 300]
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from asci_core.config import load_config  # noqa: E402
from asci_core.gpu.three_dx import grant_session, revoke_session  # noqa: E402
from asci_core.stack.docker_engine import docker_client  # noqa: E402
from asci_core.stack.manager import StackManager  # noqa: E402
from registry.service import registry_access  # noqa: E402
from tests.integration.gpu_support import DevThreeDx, free_display  # noqa: E402
from tests.integration.images_support import CONTEXT_FILES, _QuietLog, address, wait_for  # noqa: E402
from tests.integration.rfb_client import RfbClient  # noqa: E402
from autobuild.images import Family, build_family, default_images_dir  # noqa: E402

UID, GID = 4321, 4322
LABELS = {"asci.bench": "gpu_desktop"}
RATE = re.compile(r"([0-9.]+) frames/sec")


def start_session(client, ref: str, secret: Path, environment: dict, volumes: dict):
    container = client.containers.run(
        ref, detach=True, labels=LABELS,
        environment={"ASCI_USER": "bench", "ASCI_UID": str(UID), "ASCI_GID": str(GID),
                     "ASCI_VNC_PASSWORD_FILE": "/run/secrets/vnc", **environment},
        volumes={str(secret): {"bind": "/run/secrets/vnc", "mode": "ro"}, **volumes})
    ip = address(container)
    wait_for("the RFB banner", lambda: RfbClient(ip).banner(), timeout=30)
    wait_for("display :1", lambda: container.exec_run(["test", "-S", "/tmp/.X11-unix/X1"]).exit_code == 0)
    return container


def spheres(container, through_vgl: bool, frames: int) -> float:
    env = {"DISPLAY": ":1"} if through_vgl else {"DISPLAY": ":1", "ASCI_VGL_DISPLAY": ""}
    code, out = container.exec_run(["asci-gl-run", "/opt/VirtualGL/bin/glxspheres64", "-f", str(frames)],
                                   user=f"{UID}:{GID}", environment=env)
    text = out.decode(errors="replace")
    rates = [float(r) for r in RATE.findall(text)]
    if code != 0 or len(rates) < 2:
        raise SystemExit(f"glxspheres failed ({code}): {text[-300:]}")
    return statistics.median(rates[1:])


def together(containers, through_vgl: bool, frames: int) -> list[float]:
    results: list[float] = [0.0] * len(containers)

    def one(i: int) -> None:
        results[i] = spheres(containers[i], through_vgl, frames)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(containers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    config = load_config()
    if not StackManager(config).up().ok:
        raise SystemExit("the stack did not come up")
    client = docker_client(config.stack.docker.socket, timeout=900)
    family = Family(default_images_dir(), registry_access(config), config.stack.base_image.name,
                    context_files=CONTEXT_FILES)
    ref = build_family(client, family, ["desktop-gpu"], tag="latest", push=False, log=_QuietLog())[-1].ref
    figures: dict[str, list[float]] = {k: [] for k in ("vgl-one", "vgl-two", "own-one", "own-two")}
    with tempfile.TemporaryDirectory(prefix="asci-bench-gpu-") as scratch, \
            DevThreeDx(config, Path(scratch) / "state", free_display()) as server:
        secret = Path(scratch) / "vnc"
        secret.write_text("Bench-pw\n")
        secret.chmod(0o644)
        sessions = []
        try:
            for name in ("one", "two"):
                access = grant_session(server.part.cookie_file, server.display, Path(scratch), name, uid=UID, gid=GID)
                sessions.append(start_session(client, ref, secret, access.environment, access.docker_volumes()))
            for _ in range(args.rounds):
                figures["vgl-one"].append(spheres(sessions[0], True, args.frames))
                figures["vgl-two"].extend(together(sessions, True, args.frames))
                figures["own-one"].append(spheres(sessions[0], False, args.frames))
                figures["own-two"].extend(together(sessions, False, args.frames))
        finally:
            for container in sessions:
                container.remove(force=True)
            for name in ("one", "two"):
                revoke_session(Path(scratch), name)
    labels = {"vgl-one": "one session, VirtualGL on the 3DX", "vgl-two": "two sessions at once, one shared 3DX (each)",
              "own-one": "one session, Xvnc's own GLX", "own-two": "two sessions at once, each its own GLX (each)"}
    print(f"glxspheres64 -f {args.frames}, {args.rounds} rounds, median (min-max) frames/sec")
    for key, values in figures.items():
        print(f"{labels[key]:48} {statistics.median(values):6.1f} ({min(values):.1f}-{max(values):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
