"""glxspheres frame rates: through VirtualGL on one shared software 3DX vs the 2DX's own software GL.

One development 3DX (the `gpu.three_dx` stack part on a free display) and two desktop-gpu sessions
wired as the launcher will wire them (the socket alone, a per-session cookie copy). In each round,
interleaved: one session through VirtualGL; two sessions at once through VirtualGL on the same 3DX;
one session on its Xvnc's own GLX (Mesa llvmpipe); two sessions at once on their own GLX. Each run is
`glxspheres64 -f FRAMES` (window 640x480, the default); the figure is its reported frames/sec after
the first report (start-up). No GPU here: rendering is llvmpipe either way, so the figure shows what
the wiring costs (the read-back into the 2DX), not a GPU's gain.

    .venv/bin/python bench/gpu_desktop.py [--rounds 3] [--frames 300] [--startup 10]

`--startup N` (0: skip): session start to first VNC login through the launcher (`Launcher.create`,
`connect`, then a VNC login with the one-time password, retried every 10 ms), N samples each of a
desktop-gpu environment with `opengl: glx` on the same 3DX (its cookie copy written, the socket and
cookie mounted) and of desktop-base without OpenGL, interleaved; the session is stopped after each
sample (not timed). `--rounds 0` skips the frame rates.
"""
from __future__ import annotations

import argparse
import dataclasses
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
from asci_core.launcher.settings import DEFAULT_ENVIRONMENT, NodeSettings  # noqa: E402
from bench.images import percentile  # noqa: E402
from bench.launcher_sessions import login_until  # noqa: E402
from tests.integration.launcher_support import build_launcher  # noqa: E402

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


def startup(config, server, gpu_ref: str, base_ref: str, samples: int, scratch: Path) -> dict[str, list[float]]:
    """Seconds from Launcher.create to the first VNC login, per environment, interleaved."""
    node = NodeSettings(name="local", url=f"unix://{config.stack.docker.socket}", cpus=64, memory="64g", gpus=0,
                        gl_backends=["glx"], three_dx_display=f":{server.display}",
                        three_dx_cookie=server.part.cookie_file)
    base = dataclasses.replace(DEFAULT_ENVIRONMENT, image=base_ref, allowed_groups=[])
    gpu = dataclasses.replace(base, name="desktop-gpu", image=gpu_ref, opengl="glx")
    launcher = build_launcher(scratch, str(config.stack.docker.socket), LABELS, [base, gpu], nodes=[node],
                              engine_timeout=30.0)
    took: dict[str, list[float]] = {"desktop-gpu": [], "desktop-base": []}

    def one(environment: str) -> float:
        started = time.monotonic()
        record = launcher.create("alice", environment)
        try:
            connection = launcher.connect(record.id)
            return login_until(connection.address, connection.password.reveal(), started)
        finally:
            launcher.stop(record.id)

    try:
        one("desktop-gpu"), one("desktop-base")  # unmeasured: page cache, first connections
        for _ in range(samples):
            for environment in took:
                took[environment].append(one(environment))
    finally:
        launcher.close()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--startup", type=int, default=0, help="samples of session start to first VNC login")
    args = parser.parse_args()
    config = load_config()
    if not StackManager(config).up().ok:
        raise SystemExit("the stack did not come up")
    client = docker_client(config.stack.docker.socket, timeout=900)
    family = Family(default_images_dir(), registry_access(config), config.stack.base_image.name,
                    context_files=CONTEXT_FILES)
    ref = build_family(client, family, ["desktop-gpu"], tag="latest", push=False, log=_QuietLog())[-1].ref
    base_ref = family.ref("desktop-base", "latest")
    started: dict[str, list[float]] = {}
    figures: dict[str, list[float]] = {k: [] for k in ("vgl-one", "vgl-two", "own-one", "own-two")}
    with tempfile.TemporaryDirectory(prefix="asci-bench-gpu-") as scratch, \
            DevThreeDx(config, Path(scratch) / "state", free_display()) as server:
        secret = Path(scratch) / "vnc"
        secret.write_text("Bench-pw\n")
        secret.chmod(0o644)
        if args.startup:
            started = startup(config, server, ref, base_ref, args.startup, Path(scratch))
        sessions = []
        try:
            for name in ("one", "two") if args.rounds else ():
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
    if args.rounds:
        print(f"glxspheres64 -f {args.frames}, {args.rounds} rounds, median (min-max) frames/sec")
        for key, values in figures.items():
            print(f"{labels[key]:48} {statistics.median(values):6.1f} ({min(values):.1f}-{max(values):.1f})")
    if started:
        print(f"session start (Launcher.create) → first VNC login, {args.startup} samples each, interleaved")
        for name, values in started.items():
            print(f"{name:14} p50 {statistics.median(values):6.3f} s   p95 {percentile(values, 95):6.3f} s   "
                  f"max {max(values):6.3f} s")
        added = statistics.median(started["desktop-gpu"]) - statistics.median(started["desktop-base"])
        print(f"GPU wiring adds at p50: {added:+.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
