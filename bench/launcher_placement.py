"""Placement decisions with 100 nodes and 1,000 running sessions (synthetic inventory).

    .venv/bin/python bench/launcher_placement.py [--nodes 100] [--sessions 1000] [--decisions 2000]

One decision is what `Launcher.create` does between asking the engines and
writing the record: sum the reservations per node and join each node's measured
usage (node_loads) and place (filter + score). Printed: p50/p99 of a whole decision, and of place() alone, for both
strategies. Also: listing 1,000 session records from the SQLite store (what
`GET /sessions` will read).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asci_core.launcher.inventory import Capacity, Reservation, node_loads  # noqa: E402
from asci_core.launcher.placement import Demand, NoNodeFits, Ratios, place  # noqa: E402
from asci_core.launcher.store import READY, SessionRecord, SessionStore  # noqa: E402
from asci_core.launcher.usage import NodeUsage  # noqa: E402

GiB = 1024 ** 3


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def synthetic(nodes: int, sessions: int, rng: random.Random) -> tuple[dict[str, Capacity], list[Reservation]]:
    capacities: dict[str, Capacity] = {}
    for i in range(nodes):
        gpus = rng.choice([0, 0, 0, 2, 4])
        capacities[f"node{i:03}"] = Capacity(rng.choice([32, 64, 128]), rng.choice([128, 256, 512]) * GiB, gpus,
                                             tuple(map(str, range(gpus))),
                                             {"beamline": rng.choice(["i03", "i04", "b21", "p45"])})
    names = list(capacities)
    reservations = [Reservation(f"{i:016x}", rng.choice(names), f"user{i % 300}", "desktop",
                                rng.choice([1, 2, 4]), rng.choice([2, 4, 8]) * GiB) for i in range(sessions)]
    return capacities, reservations


def timed(fn, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds per call: on a shared machine the wall p99 carries other
    processes' time slices, the CPU figure is the decision's own cost."""
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append((time.thread_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    return wall, cpu


def figures(samples: tuple[list[float], list[float]]) -> str:
    wall, cpu = samples
    return (f"wall p50 {statistics.median(wall):.3f} p99 {percentile(wall, 99):.3f} | "
            f"cpu p50 {statistics.median(cpu):.3f} p99 {percentile(cpu, 99):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(42)
    capacities, reservations = synthetic(args.nodes, args.sessions, rng)
    demands = [Demand(rng.choice([1, 2, 4]), rng.choice([2, 4, 8]) * GiB, rng.choice([0, 0, 0, 1]),
                      rng.choice([{}, {}, {"beamline": "i03"}])) for _ in range(args.decisions)]
    ratios = Ratios(cpu=2.0, memory=1.0)
    # What the background sampler hands over: every node measured, some busier than reserved.
    usage = {name: NodeUsage(rng.uniform(0, c.cpus), int(rng.uniform(0, c.memory)), 10, time.time())
             for name, c in capacities.items()}
    print(f"{args.nodes} nodes, {args.sessions} sessions, {args.decisions} decisions per figure (ms)")
    for strategy in ("spread", "pack"):
        it = iter(demands * 2)

        def decision() -> None:
            try:
                place(next(it), node_loads(capacities, reservations, None, usage), strategy, ratios)
            except NoNodeFits:
                pass

        whole = timed(decision, args.decisions)
        loads = node_loads(capacities, reservations, None, usage)
        it2 = iter(demands * 2)

        def place_only() -> None:
            try:
                place(next(it2), loads, strategy, ratios)
            except NoNodeFits:
                pass

        alone = timed(place_only, args.decisions)
        print(f"  {strategy:6} decision (node_loads + place)  {figures(whole)}")
        print(f"  {strategy:6} place() alone                 {figures(alone)}")
    with tempfile.TemporaryDirectory(prefix="asci-bench-launcher-") as tmp:
        store = SessionStore(Path(tmp) / "sessions.sqlite")
        now = time.time()
        for r in reservations:
            store.insert(SessionRecord(r.session, r.user, r.environment, r.node, "c" * 64, READY, r.cpus, r.memory,
                                       0, (), now, now, now, ""))
        listing = timed(lambda: store.list(limit=1000), 200)
        store.close()
    print(f"  store.list() of {args.sessions} records      {figures(listing)}")


if __name__ == "__main__":
    main()
