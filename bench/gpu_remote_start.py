"""What the remote glx wiring costs at session start: a glx session on a TCP/TLS node vs a plain one.

One dockerd node in its own network namespace, reached over TCP with TLS on this machine's loopback
(as in tests/integration/test_launcher_gpu_remote.py), a development 3DX, and the small test image.
Each sample is `Launcher.create` until the session is ready, for an environment with `opengl: glx`
(the node's cookie read through its engine by a never-started container, the session's copy put
into its container before start) and for the same environment without OpenGL, interleaved, one
warm-up each unmeasured; the session is stopped after each sample (not timed). The difference is
the price of reading the cookie on the node and putting the copy in.

    .venv/bin/python bench/gpu_remote_start.py [--samples 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from asci_core.config import load_config  # noqa: E402
from asci_core.launcher.settings import NodeSettings, NodeTLSSettings  # noqa: E402
from asci_core.stack.docker_engine import docker_client  # noqa: E402
from bench.images import percentile  # noqa: E402
from tests.integration.gpu_support import DevThreeDx, free_display  # noqa: E402
from tests.integration.launcher_nodes import EngineTls, NodeCluster  # noqa: E402
from tests.integration.launcher_support import TINY, build_launcher, tiny_environment  # noqa: E402

LABELS = {"asci.bench": "gpu_remote_start"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    config = load_config()
    work = Path(tempfile.mkdtemp(prefix="asci-bench-gpu-remote-"))
    tls = EngineTls.make(work / "tls")
    source = docker_client(config.stack.docker.socket, timeout=300)
    with NodeCluster(1, "bench", tls=tls) as cluster, \
            DevThreeDx(config, work / "3dx", free_display(80)) as three_dx:
        cluster.load_image(source, TINY)
        node = cluster.nodes[0]
        settings = NodeSettings(name=node.name, url=node.tcp_url, cpus=4.0, memory="4g", gpus=0, timeout=30.0,
                                tls=NodeTLSSettings(tls.ca_cert, tls.client_cert, tls.client_key),
                                gl_backends=["glx"], three_dx_display=f":{three_dx.display}",
                                three_dx_cookie=three_dx.part.cookie_file)
        envs = [tiny_environment(work, "glx", mounts=[], allowed_groups=[], opengl="glx"),
                tiny_environment(work, "plain", mounts=[], allowed_groups=[])]
        launcher = build_launcher(work, "", LABELS, envs, nodes=[settings])
        times: dict[str, list[float]] = {"glx": [], "plain": []}
        try:
            for sample in range(args.samples + 1):
                for name in ("glx", "plain"):
                    began = time.monotonic()
                    record = launcher.create("alice", name)
                    elapsed = time.monotonic() - began
                    launcher.stop(record.id)
                    if sample:  # the first of each is a warm-up
                        times[name].append(elapsed)
        finally:
            for left in launcher.list():
                launcher.stop(left.id)
            launcher.close()
    source.close()
    print(f"| Launcher.create on a TCP/TLS node, {args.samples} samples each | p50 | p95 | max |")
    print("|---|---|---|---|")
    for name, label in (("glx", "tiny, opengl glx (cookie read on the node, copy put in)"),
                        ("plain", "tiny, no OpenGL")):
        values = times[name]
        print(f"| {label} | {statistics.median(values):.3f} s | {percentile(values, 95):.3f} s | {max(values):.3f} s |")
    print(f"glx - plain at p50: {statistics.median(times['glx']) - statistics.median(times['plain']):+.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
