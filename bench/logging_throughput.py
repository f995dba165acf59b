"""End-to-end log shipping throughput: journald → searchable documents, asci shipper vs rsyslog.

    .venv/bin/python bench/logging_throughput.py [--events 200000] [--rounds 1] [--heap-mb 1024]

Both contenders ship the same journal entries (ASCI JSON lines, as asci_core writes
them) through the same ingest pipeline (<prefix>-asci-core) and index template into
a search-engine instance of the bench's own, one after the other:

- asci: `asci logging ship`, its journal selection matching the workload;
- rsyslog: Debian's rsyslogd as a separate process with its own config and state,
  imjournal → omelasticsearch in bulk mode, starting at the same journal position.

Throughput is events divided by the time from the shipper being ready to the last
document being searchable (count after refresh). CPU is the shipper process's own
user+system time. Nothing is asserted: the figures are printed, with the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml
from systemd import journal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.procstat import cpu_seconds  # noqa: E402
from tests.conftest import free_port  # noqa: E402

from asci_core.config import parse_config  # noqa: E402
from asci_core.stack.manager import StackManager  # noqa: E402
from asci_core.stack.search_engine import SearchEnginePart  # noqa: E402
from asci_logging.assets import load_assets  # noqa: E402
from asci_logging.installer import Installer  # noqa: E402

ASCI = str(Path(sys.executable).with_name("asci"))
TICKS = os.sysconf("SC_CLK_TCK")
LINE = ('{{"timestamp":"2026-11-26T06:00:00.{ms:03d}+00:00","level":"info","component":"asci_core",'
        '"message":"session heartbeat {i}","session_id":"s-{s}","user":"user{u}","environment":"mx","node":"n1"}}')


@dataclass
class Result:
    name: str
    events: int
    seconds: float
    cpu_seconds: float
    cpu_total_seconds: float
    engine_cpu_seconds: float
    batches: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_per_100k(self) -> float:
        return self.cpu_seconds / self.events * 100_000


def last_journal_cursor() -> str:
    reader = journal.Reader()
    reader.seek_tail()
    reader._previous()
    cursor = reader._get_cursor()
    reader.close()
    return cursor


def write_workload(ident: str, events: int) -> float:
    started = time.monotonic()
    for i in range(events):
        journal.sendv("MESSAGE=" + LINE.format(ms=i % 1000, i=i, s=i % 50, u=i % 20), f"SYSLOG_IDENTIFIER={ident}",
                      "PRIORITY=6", "ASCI_COMPONENT=asci_core")
    subprocess.run(["journalctl", "--sync"], check=True)
    return time.monotonic() - started


def count(url: str, index: str) -> int:
    requests.post(f"{url}/{index}/_refresh", timeout=60)
    resp = requests.get(f"{url}/{index}/_count", timeout=60)
    return resp.json().get("count", 0) if resp.ok else 0


def wait_for(url: str, index: str, events: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count(url, index) >= events:
            return time.monotonic()
        time.sleep(0.5)
    raise SystemExit(f"bench: {index} did not reach {events} documents in {timeout:.0f} s")


def parsed_like_asci_core(url: str, index: str) -> bool:
    """Same work for the engine: the line was parsed as ASCI JSON, not kept as text."""
    hit = requests.post(f"{url}/{index}/_search", json={"size": 1}, timeout=60).json()["hits"]["hits"][0]["_source"]
    return "session" in hit and "tags" not in hit


def warm_up(url: str, prefix: str, events: int) -> float:
    """Index throw-away documents through the same pipeline first: a fresh JVM runs the first
    tens of thousands of documents several times slower, which would favour whoever goes second."""
    started = time.monotonic()
    index = f"{prefix}-warmup-asci-core"

    def stream(part: int) -> None:
        session = requests.Session()
        for start in range(part * events // 2, (part + 1) * events // 2, 2000):
            rows = []
            for i in range(start, start + 2000):
                rows.append(json.dumps({"index": {"_index": index, "_id": f"w{i}", "pipeline": f"{prefix}-asci-core"}}))
                rows.append(json.dumps({"@timestamp": "2026-11-26T06:00:00.000000Z",
                                        "message": LINE.format(ms=i % 1000, i=i, s=i % 50, u=i % 20),
                                        "log": {"level": "info"}, "event": {"dataset": "asci-core"}}))
            session.post(f"{url}/_bulk", data="\n".join(rows) + "\n",
                         headers={"Content-Type": "application/x-ndjson"}, timeout=300).raise_for_status()

    threads = [threading.Thread(target=stream, args=(p,)) for p in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    requests.delete(f"{url}/{index}", timeout=60)
    return time.monotonic() - started


def run_asci(work: Path, url: str, prefix: str, ident: str, events: int, engine_pid: int, batch: int) -> Result:
    config = work / "asci.yaml"
    config.write_text(yaml.safe_dump({
        "stack": {"state_dir": str(work / "asci-state")},
        "logging": {"url": url, "prefix": prefix, "shipper": {
            "select": [[f"SYSLOG_IDENTIFIER={ident}"]], "metrics_interval": 5, "batch_size": batch,
            "routes": [{"pipeline": "asci-core", "identifier": f"^{re.escape(ident)}$"}]}},
    }))
    ready = threading.Event()
    proc = subprocess.Popen([ASCI, "-c", str(config), "logging", "ship"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)

    def watch() -> None:
        assert proc.stderr is not None
        for row in proc.stderr:
            if '"shipper started"' in row:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    if not ready.wait(60):
        proc.kill()
        raise SystemExit("bench: the asci shipper did not start")
    started, engine0 = time.monotonic(), cpu_seconds(engine_pid)
    finished = wait_for(url, f"{prefix}-asci-core-*", events, 600)
    engine = cpu_seconds(engine_pid) - engine0
    total = cpu_seconds(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    metrics = json.loads((work / "asci-state" / "logging" / "shipper-metrics.json").read_text())
    if not parsed_like_asci_core(url, f"{prefix}-asci-core-*"):
        raise SystemExit("bench: asci documents were not parsed by the asci-core pipeline")
    return Result("asci shipper", events, finished - started, metrics["cpu_seconds"], total, engine,
                  f"{metrics['bulk_requests']} bulk requests")


RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="256k")
main_queue(queue.type="Direct")
module(load="imjournal" StateFile="{state}" IgnorePreviousMessages="off" Ratelimit.Interval="0"
       PersistStateInterval="10000")
module(load="omelasticsearch")
template(name="ascidoc" type="list") {{
  constant(value="{{\\"@timestamp\\":\\"") property(name="timereported" dateFormat="rfc3339")
  constant(value="\\",\\"message\\":\\"") property(name="msg" format="json")
  constant(value="\\",\\"log\\":{{\\"level\\":\\"") property(name="syslogseverity-text")
  constant(value="\\",\\"syslog\\":{{\\"appname\\":\\"") property(name="programname" format="json")
  constant(value="\\"}}}},\\"host\\":{{\\"name\\":\\"") property(name="hostname" format="json")
  constant(value="\\"}},\\"asci\\":{{\\"component\\":\\"") property(name="$!ASCI_COMPONENT" format="json")
  constant(value="\\"}},\\"event\\":{{\\"dataset\\":\\"asci-core\\"}}}}")
}}
if $!SYSLOG_IDENTIFIER == "{ident}" then {{
  action(type="omelasticsearch" server="127.0.0.1" serverport="{port}" template="ascidoc"
         searchIndex="{index}" esVersion.major="8" bulkmode="on" pipelineName="{pipeline}"
         action.resumeRetryCount="-1"
         queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="{batch}" queue.workerThreads="1")
}}
stop
"""


def run_rsyslog(work: Path, url: str, prefix: str, ident: str, cursor: str, events: int, engine_pid: int,
                batch: int) -> Result:
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(rsyslogd).exists():
        raise SystemExit("bench: rsyslogd missing (Debian packages rsyslog rsyslog-elasticsearch)")
    rwork = work / "rsyslog"
    rwork.mkdir()
    state = rwork / "imjournal.state"
    state.write_text(cursor)  # the same start as the asci shipper: just before the workload
    index = f"{prefix}-rsyslog-asci-core"
    conf = rwork / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(work=rwork, state=state, ident=ident, port=url.rsplit(":", 1)[1],
                                        index=index, pipeline=f"{prefix}-asci-core", batch=batch))
    check = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit(f"bench: rsyslog config refused:\n{check.stderr}{check.stdout}")
    engine0 = cpu_seconds(engine_pid)
    started = time.monotonic()
    proc = subprocess.Popen([rsyslogd, "-n", "-f", str(conf), "-i", str(rwork / "rsyslogd.pid")],
                            stdout=open(rwork / "rsyslogd.log", "wb"), stderr=subprocess.STDOUT)
    try:
        finished = wait_for(url, index, events, 900)
        engine = cpu_seconds(engine_pid) - engine0
        total = cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    if not parsed_like_asci_core(url, index):
        raise SystemExit("bench: rsyslog documents were not parsed by the asci-core pipeline")
    return Result("rsyslog imjournal → omelasticsearch", events, finished - started, total, total, engine)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1, help="alternate asci and rsyslog this many times")
    parser.add_argument("--batch", type=int, default=2000, help="events per _bulk request, both contenders")
    parser.add_argument("--heap-mb", type=int, default=1024, help="heap of the bench's own search engine")
    parser.add_argument("--warm-up", type=int, default=100_000, help="throw-away documents to warm the engine's JIT")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="asci-bench-logging-"))
    url = f"http://127.0.0.1:{free_port()}"
    config = parse_config(yaml.safe_dump({"stack": {
        "state_dir": str(work / "engine"),
        "search": {"url": url, "transport_port": free_port(), "heap_mb": args.heap_mb}}}))
    manager = StackManager(config, parts=[SearchEnginePart(config)])
    report = manager.up()
    if not report.ok:
        raise SystemExit(f"bench: search engine did not start: {report.parts[0].detail}")
    engine_pid = json.loads((work / "engine" / "stack.json").read_text())["parts"]["search"]["pid"]
    results: list[Result] = []
    try:
        prefix = f"asci-bench-{uuid.uuid4().hex[:8]}"
        Installer(url, requests.Session(), load_assets(prefix)).run()
        if args.warm_up:
            print(f"engine warm-up: {args.warm_up} documents in {warm_up(url, prefix, args.warm_up):.1f} s", flush=True)
        for rnd in range(args.rounds):
            ident = f"asci-bench-{uuid.uuid4().hex[:8]}"
            cursor = last_journal_cursor()
            took = write_workload(ident, args.events)
            print(f"round {rnd + 1}: wrote {args.events} journal entries in {took:.1f} s "
                  f"({args.events / took:,.0f}/s)", flush=True)
            round_dir = work / f"r{rnd}"
            round_dir.mkdir()
            # Both index under the one template and pipeline set, each into its own index.
            contenders = [lambda: run_asci(round_dir, url, prefix, ident, args.events, engine_pid, args.batch),
                          lambda: run_rsyslog(round_dir, url, prefix, ident, cursor, args.events, engine_pid,
                                              args.batch)]
            # Alternate who goes first: the engine's JIT warm-up and any drift then hit both alike.
            for contender in contenders if rnd % 2 == 0 else contenders[::-1]:
                res = contender()
                results.append(res)
                print(f"  {res.name}: {res.rate:,.0f} events/s, {res.seconds:.2f} s, "
                      f"{res.cpu_per_100k:.2f} CPU s per 100k events, engine {res.engine_cpu_seconds:.1f} CPU s",
                      flush=True)
            for index in (f"{prefix}-asci-core-*", f"{prefix}-rsyslog-asci-core"):
                requests.delete(f"{url}/{index}", timeout=60)
    finally:
        manager.down()
        shutil.rmtree(work, ignore_errors=True)
    print_summary(results, args)
    return 0


def print_summary(results: list[Result], args: argparse.Namespace) -> None:
    def median(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    names = ["asci shipper", "rsyslog imjournal → omelasticsearch"]
    rows = {}
    print()
    print("| contender | events/s end to end (median / best) | shipper CPU s per 100k events (median) "
          "| engine CPU s per 100k events (median) |")
    print("|---|---:|---:|---:|")
    for name in names:
        mine = [r for r in results if r.name == name]
        rate = median([r.rate for r in mine])
        cpu = median([r.cpu_per_100k for r in mine])
        engine = median([r.engine_cpu_seconds / r.events * 100_000 for r in mine])
        rows[name] = (rate, cpu)
        print(f"| {name} | {rate:,.0f} / {max(r.rate for r in mine):,.0f} | {cpu:.2f} | {engine:.1f} |")
    (a_rate, a_cpu), (r_rate, r_cpu) = rows[names[0]], rows[names[1]]
    print()
    print(f"ratio asci/rsyslog (medians): throughput {a_rate / r_rate:.2f}x; "
          f"events per shipper CPU second {r_cpu / a_cpu:.2f}x")
    asci = [r for r in results if r.name == names[0]]
    print(f"asci shipper whole-process CPU incl. Python start-up: "
          f"{median([r.cpu_total_seconds for r in asci]):.2f} s for {args.events} events ({asci[0].batches})")
    load = os.getloadavg()
    print(f"events {args.events}, batch {args.batch}, engine heap {args.heap_mb} MiB, warm-up {args.warm_up}, "
          f"rounds {args.rounds}, {os.cpu_count()} CPUs, load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
