"""Creates while a node hangs, and what the background usage sampling costs a node.

    .venv/bin/python bench/launcher_node_health.py [--creates 10] [--timeout 5] [--containers 1,8,24]

Two real engines in network namespaces (the test tooling's NodeCluster; run as root).
1. Create latency (launcher.create, tiny image, session started): N creates with both
   engines answering; then the first engine is frozen (SIGSTOP) and N more creates, the
   first of which finds out; then SIGCONT and the time until the background prober has
   the node up again.
2. One usage-sampler round (list the running containers, one-shot stats of each, up to
   8 at once) on a node running K containers, for each K: what every `usage_interval`
   costs in the background.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asci_core.launcher.settings import NodeSettings  # noqa: E402
from asci_core.launcher.usage import PARALLEL, sample_node  # noqa: E402
from asci_core.stack.docker_engine import docker_client  # noqa: E402
from bench.launcher_placement import percentile  # noqa: E402
from tests.integration.launcher_nodes import NodeCluster  # noqa: E402
from tests.integration.launcher_support import TINY, build_launcher, make_data, tiny_environment  # noqa: E402

SCOPE = {"asci.bench": "node-health"}


def seconds(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.2f} s, p95 {percentile(values, 95):.2f} s, max {max(values):.2f} s"


def creates(launcher, count: int, users: list[str]) -> tuple[list[float], list]:
    times, records = [], []
    for i in range(count):
        began = time.monotonic()
        records.append(launcher.create(users[i % len(users)], "tiny"))
        times.append(time.monotonic() - began)
    return times, records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creates", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=5.0, help="the nodes' engine timeout (s)")
    parser.add_argument("--containers", default="1,8,24", help="running containers per sampling figure")
    args = parser.parse_args()
    local = docker_client("unix:///var/run/docker.sock", timeout=60, version="1.41")
    with tempfile.TemporaryDirectory(prefix="asci-bench-nodes-") as tmp, NodeCluster(2, "bnode") as cluster:
        cluster.load_image(local, TINY)
        tmp_path = Path(tmp)
        make_data(tmp_path / "fs", ("alice", 5001), ("bob", 5002))
        nodes = [NodeSettings(name=n.name, url=n.url, cpus=64.0, memory="64g", gpus=0, timeout=args.timeout)
                 for n in cluster]
        launcher = build_launcher(tmp_path, "", SCOPE, [tiny_environment(tmp_path / "fs", cpus=0.01)], nodes=nodes,
                                  placement="spread", max_sessions_per_user=10 * args.creates)
        try:
            healthy, _ = creates(launcher, args.creates, ["alice", "bob"])
            hung = cluster.nodes[0]
            hung.freeze()
            try:
                with_hung, _ = creates(launcher, args.creates + 1, ["alice", "bob"])
            finally:
                hung.thaw()
            began = time.monotonic()
            while launcher.pool.down():
                if time.monotonic() - began > 120:
                    raise SystemExit("the frozen node did not come back within 120 s")
                time.sleep(0.05)
            back = time.monotonic() - began
        finally:
            launcher.close()
        print(f"creates, both nodes answering ({args.creates}):        {seconds(healthy)}")
        print(f"first create after one node hung (timeout {args.timeout:g} s): {with_hung[0]:.2f} s")
        print(f"later creates with that node down ({args.creates}):   {seconds(with_hung[1:])}")
        print(f"node up again after SIGCONT (background prober):  {back:.2f} s")

        node = cluster.nodes[1]
        client = node.client()
        started: list = []
        try:
            with ThreadPoolExecutor(max_workers=PARALLEL) as workers:
                for count in (int(c) for c in args.containers.split(",")):
                    while len(started) < count:
                        started.append(client.containers.run(TINY, ["sleep", "3600"], detach=True, init=True,
                                                             labels=SCOPE))
                    rounds = []
                    for _ in range(5):
                        began = time.monotonic()
                        readings = sample_node(client, workers)
                        rounds.append(time.monotonic() - began)
                    running = len(client.api.containers())
                    print(f"usage sampler round, {running:3} running containers: {seconds(rounds)} "
                          f"({len(readings)} readings)")
        finally:
            for container in started:
                container.remove(force=True)
            client.close()
    local.close()


if __name__ == "__main__":
    main()
