"""`GET /api/v1/sessions` of a real `asci serve` holding 1,000 session records.

    .venv/bin/python bench/launcher_api.py [--sessions 1000] [--requests 300] [--concurrency 8]

The records are written straight into the session store of a throw-away state
folder (no containers: the configuration names no environment, so the service
reconciles nothing and touches no engine), then `asci serve` starts as its own
process and the admin token lists them all, over keep-alive connections: first
one request at a time, then CONCURRENCY at once. Printed: p50/p99 in
milliseconds, requests per second, the service's CPU time per request, and
the answer's size.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asci_core.launcher.store import READY, SessionRecord, SessionStore  # noqa: E402
from bench.procstat import cpu_seconds  # noqa: E402
from tests.conftest import free_port  # noqa: E402

ASCI = str(Path(sys.executable).with_name("asci"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def fill(store_path: Path, sessions: int) -> None:
    store = SessionStore(store_path)
    now = time.time()
    for i in range(sessions):
        store.insert(SessionRecord(f"{i:016x}", f"user{i % 300}", "desktop", f"node{i % 100:03}", "c" * 64, READY,
                                   2.0, 4 * 1024 ** 3, 0, (), now - i, now, now, ""))
    store.close()


def timed_gets(url: str, token: str, count: int, expect: int) -> list[float]:
    took = []
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {token}"
        for _ in range(count):
            t0 = time.perf_counter()
            resp = http.get(url, timeout=30)
            body = resp.json()
            took.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200 or len(body["sessions"]) != expect:
                raise SystemExit(f"unexpected answer: HTTP {resp.status_code}, {len(body.get('sessions', []))} sessions")
    return took


def report(label: str, took: list[float], seconds: float, server_cpu: float) -> None:
    """SERVER_CPU: the service's CPU seconds over the run; per request it is the answer's own cost,
    which other processes on a shared machine do not inflate."""
    print(f"  {label:22} p50 {statistics.median(took):7.2f} ms  p99 {percentile(took, 99):7.2f} ms  "
          f"{len(took) / seconds:6.1f} req/s  server CPU {server_cpu / len(took) * 1000:5.1f} ms/request")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asci-bench-api-") as tmp:
        root = Path(tmp)
        workdir = root / "launcher"
        fill(workdir / "sessions.sqlite", args.sessions)
        port = free_port()
        config = root / "asci.yaml"
        config.write_text(yaml.safe_dump({"server": {"port": port}, "stack": {"state_dir": str(root / "state")},
                                          "launcher": {"workdir": str(workdir)}}))
        proc = subprocess.Popen([ASCI, "-c", str(config), "serve"], stdout=subprocess.PIPE, text=True)
        try:
            while json.loads(proc.stdout.readline() or '{"message": "exited"}')["message"] not in ("listening", "exited"):
                pass
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            token = (workdir / "api-token").read_text().strip()
            url = f"http://127.0.0.1:{port}/api/v1/sessions"
            size = len(requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30).content)
            print(f"GET /api/v1/sessions, {args.sessions} sessions in the store, answer {size / 1024:.0f} KiB")
            timed_gets(url, token, 20, args.sessions)  # warm-up
            t0, c0 = time.perf_counter(), cpu_seconds(proc.pid)
            took = timed_gets(url, token, args.requests, args.sessions)
            report("sequential", took, time.perf_counter() - t0, cpu_seconds(proc.pid) - c0)
            results: list[list[float]] = [[] for _ in range(args.concurrency)]
            per_client = max(1, args.requests // args.concurrency)

            def client(i: int) -> None:
                results[i] = timed_gets(url, token, per_client, args.sessions)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.concurrency)]
            t0, c0 = time.perf_counter(), cpu_seconds(proc.pid)
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            report(f"{args.concurrency} concurrent clients", [x for r in results for x in r], time.perf_counter() - t0,
                   cpu_seconds(proc.pid) - c0)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
