"""Webhook intake under load: signature check + durable insert + answer, measured from outside.

A real `asci serve` (autobuild paused, so no build competes for the CPU) takes
signed Bitbucket Server deliveries, each for a distinct tag, from `wrk` running
as a separate process on loopback. Prints deliveries/s, latency percentiles,
the receiver's memory, and checks that every 202 left a row on disk.

    .venv/bin/python bench/autobuild_intake.py [--seconds 15] [--connections 32]

Needs Debian's `wrk` (apt-get install wrk).
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.procstat import cpu_seconds, status_kib  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.integration.autobuild_support import SECRET, Serve, server_payload  # noqa: E402

REPO = "BENCH/intake"
LUA = """
local bodies = dofile("%(data)s")
local i = 0
request = function()
  i = i + 1
  local item = bodies[(i - 1) %% #bodies + 1]
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["X-Event-Key"] = "repo:refs_changed"
  headers["X-Request-Id"] = item[1]
  headers["X-Hub-Signature"] = item[2]
  return wrk.format("POST", "/hooks/bitbucket", headers, item[3])
end
local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  io.write("BENCH-RESULT ")
  io.write(string.format("requests=%%d duration_us=%%d errors_status=%%d errors_connect=%%d errors_timeout=%%d ",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.timeout))
  for _, p in pairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%%s_us=%%d ", tostring(p), latency:percentile(p)))
  end
  io.write(string.format("max_us=%%d\\n", latency.max))
end
"""


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--bodies", type=int, default=60000, help="distinct deliveries prepared")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="asci-bench-intake-"))
    port = free_port()
    config = work / "asci.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"port": port},
        "logging": {"level": "warning"},
        "stack": {"state_dir": str(work / "state")},
        "autobuild": {"workdir": str(work / "ab"), "paused": True,
                      "hosts": [{"name": "bitbucket", "kind": "server", "url": "https://bitbucket.test.invalid",
                                 "clone_url": "file:///nonexistent/{project}/{slug}.git"}],
                      "repositories": [{"name": REPO, "webhook_secret": SECRET}]},
    }))

    entries = []
    for i in range(args.bodies):
        commit = hashlib.sha1(str(i).encode()).hexdigest()
        body = json.dumps(server_payload(REPO, f"v{i // 10000}.{i // 100 % 100}.{i % 100}", commit))
        sig = "sha256=" + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        entries.append(f"{{{lua_string(f'bench-{i}')}, {lua_string(sig)}, {lua_string(body)}}}")
    data = work / "bodies.lua"
    data.write_text("return {\n" + ",\n".join(entries) + "\n}\n")
    script = work / "intake.lua"
    script.write_text(LUA % {"data": data})

    serve = Serve(config, port, work / "serve.log").start()
    try:
        pid = serve.proc.pid
        rss_idle = status_kib(pid, "VmRSS")
        out = subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "5s",
                              "-s", str(script), serve.url], capture_output=True, text=True, check=True).stdout
        rss_after, hwm = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
        cpu = cpu_seconds(pid)
    finally:
        serve.stop()
    result = dict(kv.split("=") for kv in re.search(r"BENCH-RESULT (.*)", out).group(1).split())
    n, duration = int(result["requests"]), int(result["duration_us"]) / 1e6
    db = sqlite3.connect(work / "ab" / "autobuild.db")
    rows = db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
    builds = db.execute("SELECT COUNT(*) FROM builds").fetchone()[0]
    db.close()
    print(f"deliveries sent        {n} in {duration:.1f}s over {args.connections} connections (wrk, 1 thread)")
    print(f"throughput             {n / duration:,.0f} deliveries/s")
    print(f"latency p50/p90/p99    {int(result['p50_us']) / 1000:.2f} / {int(result['p90_us']) / 1000:.2f} / "
          f"{int(result['p99_us']) / 1000:.2f} ms (max {int(result['max_us']) / 1000:.1f} ms)")
    print(f"non-2xx / conn errors  {result['errors_status']} / {result['errors_connect']} "
          f"(timeouts {result['errors_timeout']})")
    print(f"durable rows           {rows} deliveries, {builds} builds queued (every answered delivery is on disk: "
          f"{rows >= n - int(result['errors_status']) - args.connections})")
    print(f"receiver memory        RSS {rss_idle / 1024:.0f} MiB idle, {rss_after / 1024:.0f} MiB after, "
          f"peak {hwm / 1024:.0f} MiB; CPU {cpu:.1f}s")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
