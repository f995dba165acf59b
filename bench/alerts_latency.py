"""Alerts: container log line → Slack post latency, and one full rule pass over many documents.

    .venv/bin/python bench/alerts_latency.py [--samples 5] [--docs 100000] [--skip-latency] [--skip-pass]

Latency: the shipped alerts settings (all shipped rules, run_every 30 s), the real shipper
(`asci logging ship`) and `asci alerts run` as processes; each sample starts a real container
(journald log driver, autobuild's labels) that prints autobuild's "build finished … failure"
line, and the time runs from `docker run` to the post arriving at a loopback Slack receiver.

Rule pass: DOCS documents in final (already parsed) shape are bulk-indexed into a private
prefix over the last 50 minutes — a mix of access lines, ASCI JSON lines, failed logins,
errors and builds — then each shipped rule runs once over that whole range with ElastAlert's
own run_rule (no Slack; the dry-run path of `asci alerts test`): seconds per rule.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from alerts.elastalert_driver import dry_run  # noqa: E402
from alerts.preview import Capture  # noqa: E402
from alerts.rules_source import rule_files  # noqa: E402
from alerts.writeback import remove_writeback  # noqa: E402
from asci_core.config import load_config  # noqa: E402
from asci_logging.container_logging import log_config  # noqa: E402
from asci_logging.search_client import SearchAccess  # noqa: E402
from tests.integration.alerts_support import jsonlog_line  # noqa: E402
from tests.integration.autobuild_support import SlackReceiver  # noqa: E402
from tests.integration.logging_support import ASCI, LogSite  # noqa: E402
from asci_core.stack.docker_engine import docker_client

BENCH_LABEL = {"asci.bench": "alerts-latency"}


def write_config(work: Path, prefix: str, writeback: str, webhook: str, names: list[str]) -> Path:
    path = work / "asci.yaml"
    path.write_text(yaml.safe_dump({
        "stack": {"state_dir": str(work / "state")},
        "logging": {"prefix": prefix, "shipper": {"select": [[f"CONTAINER_NAME={n}" for n in names]]}},
        # Shipped alert settings: only where ElastAlert keeps state and where Slack is differ.
        "alerts": {"slack_webhook_url": webhook, "writeback_index": writeback},
    }))
    return path


def measure_latency(samples: int, url: str) -> list[float]:
    config = load_config()
    client = docker_client(config.stack.docker.socket, timeout=120)
    token = uuid.uuid4().hex[:8]
    site = LogSite(f"asci-bench-alerts-{token}", url)
    site.install()
    writeback = f"asci-bench-alerts-ea-{token}"
    names = [f"asci-bench-alerts-{token}-{i}" for i in range(samples)]
    receiver = SlackReceiver()
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="asci-bench-alerts-") as tmp:
        work = Path(tmp)
        cfg = write_config(work, site.prefix, writeback, receiver.url, names)
        shipper = subprocess.Popen([ASCI, "-c", str(cfg), "logging", "ship"], stdout=subprocess.DEVNULL,
                                   stderr=open(work / "ship.log", "wb"))
        alerter = subprocess.Popen([ASCI, "-c", str(cfg), "alerts", "run"], stdout=subprocess.DEVNULL,
                                   stderr=open(work / "alerts.log", "wb"))
        try:
            # Let ElastAlert finish starting (first passes are staggered by up to 15 s).
            deadline = time.monotonic() + 60
            while b"Ran build-failed" not in (work / "alerts.log").read_bytes():
                if time.monotonic() > deadline or alerter.poll() is not None:
                    raise SystemExit("asci alerts run did not start:\n" + (work / "alerts.log").read_text()[-2000:])
                time.sleep(0.2)
            for i, name in enumerate(names):
                # Different phases against ElastAlert's schedule.
                time.sleep(random.uniform(0, 10))
                line = jsonlog_line("autobuild", "error", "build finished", at=dt.datetime.now(dt.timezone.utc),
                                    build_id=1000 + i, repository="BENCH/latency", tag=f"v0.0.{i}", outcome="failure",
                                    stage="build", error="bench", duration_s=1.0)
                logging = log_config("autobuild", name)
                before = len(receiver.messages)
                started = time.monotonic()
                client.containers.run(config.stack.base_image.tiny_name, ["sh", "-c", f"echo '{line}'"], name=name,
                                      remove=True, labels={**BENCH_LABEL, **logging.labels},
                                      log_config=logging.log_config)
                while len(receiver.messages) == before:
                    if time.monotonic() - started > 180:
                        raise SystemExit(f"no Slack post for sample {i} within 180 s")
                    time.sleep(0.05)
                latencies.append(time.monotonic() - started)
                print(f"sample {i}: {latencies[-1]:.1f} s", flush=True)
        finally:
            for proc in (alerter, shipper):
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            receiver.close()
            site.remove()
            remove_writeback(SearchAccess(url), writeback)
            client.close()
    return latencies


def documents(n: int, start: dt.datetime, span: dt.timedelta):
    """A day-like mix in final shape, with a few attacks and failures among the ordinary lines."""
    rnd = random.Random(7)
    for i in range(n):
        ts = (start + span * (i / n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        r = rnd.random()
        base = {"@timestamp": ts, "host": {"name": "bench"}, "log": {"level": "info"}}
        if r < 0.55:
            status = 200 if rnd.random() < 0.9 else rnd.choice([401, 403, 404])
            doc = {**base, "asci": {"component": "proxy"}, "message": "GET /api/sessions",
                   "source": {"ip": f"10.0.{rnd.randrange(4)}.{rnd.randrange(250)}"},
                   "http": {"response": {"status_code": status}, "request": {"method": "GET"}},
                   "url": {"original": "/api/sessions"}}
        elif r < 0.80:
            doc = {**base, "asci": {"component": "asci_core"}, "message": "session started",
                   "session": {"id": f"s-{i}"}, "user": {"name": f"user{rnd.randrange(300)}"}}
        elif r < 0.90:
            doc = {**base, "asci": {"component": "autobuild"}, "message": "delivery"}
        elif r < 0.95:
            doc = {**base, "asci": {"component": "registry"}, "message": "registry token refused",
                   "log": {"level": "warning"}, "event": {"category": "authentication", "outcome": "failure"},
                   "user": {"name": f"user{rnd.randrange(300)}"},
                   "source": {"ip": f"203.0.113.{rnd.randrange(50)}"}}
        elif r < 0.99:
            doc = {**base, "asci": {"component": rnd.choice(["autobuild", "registry", "asci_core"])},
                   "log": {"level": "error"}, "message": "worker error"}
        else:
            doc = {**base, "asci": {"component": "autobuild"}, "log": {"level": "error"}, "message": "build finished",
                   "build": {"id": str(i), "repository": "BENCH/pass", "tag": "v1.0.0", "outcome": "failure"}}
        yield doc


def fill(url: str, index: str, n: int, start: dt.datetime, span: dt.timedelta) -> float:
    session = requests.Session()
    began = time.monotonic()
    batch: list[bytes] = []
    # autobuild's lines live in their own dataset's indices, as the shipper routes them.
    actions = {c: json.dumps({"index": {"_index": index.replace("-DATASET-", f"-{c}-")}}).encode()
               for c in ("autobuild", "other")}
    for doc in documents(n, start, span):
        dataset = "autobuild" if doc["asci"]["component"] == "autobuild" else "other"
        batch += [actions[dataset], json.dumps(doc).encode()]
        # Small requests: the shared development engine has a 512 MB heap and a circuit breaker.
        if len(batch) >= 2000:
            _bulk(session, url, batch)
            batch = []
    if batch:
        _bulk(session, url, batch)
    session.post(f"{url}/{index.replace('-DATASET-', '-*-')}/_refresh", timeout=300)
    return time.monotonic() - began


def _bulk(session: requests.Session, url: str, lines: list[bytes]) -> None:
    for _ in range(60):
        resp = session.post(f"{url}/_bulk", data=b"\n".join(lines) + b"\n", timeout=600,
                            headers={"Content-Type": "application/x-ndjson"})
        if resp.status_code != 429:
            break
        time.sleep(2)   # the engine's breaker tripped (other work shares it): let it breathe
    resp.raise_for_status()
    if resp.json().get("errors"):
        raise SystemExit("bulk rejected documents: " + resp.text[:500])


def measure_pass(n: int, url: str) -> dict[str, tuple[float, int]]:
    token = uuid.uuid4().hex[:8]
    site = LogSite(f"asci-bench-pass-{token}", url)
    site.install()
    end = dt.datetime.now(dt.timezone.utc)
    start = end - dt.timedelta(minutes=50)
    results: dict[str, tuple[float, int]] = {}
    try:
        took = fill(url, f"{site.prefix}-DATASET-{end:%Y.%m.%d}", n, start, dt.timedelta(minutes=49))
        print(f"indexed {n} documents in {took:.0f} s", flush=True)
        with tempfile.TemporaryDirectory(prefix="asci-bench-pass-") as tmp:
            work = Path(tmp)
            cfg = work / "asci.yaml"
            cfg.write_text(yaml.safe_dump({"stack": {"state_dir": str(work / "state")},
                                           "logging": {"prefix": site.prefix}}))
            config = load_config(cfg)
            with Capture() as capture:
                for name in rule_files():
                    began = time.monotonic()
                    matches = dry_run(config, name, start, end + dt.timedelta(seconds=1), work / name, capture.url)
                    results[name] = (time.monotonic() - began, matches)
                    print(f"{name}: {results[name][0]:.1f} s, {matches} matches", flush=True)
    finally:
        site.remove()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-pass", action="store_true")
    args = parser.parse_args()
    url = load_config().stack.search.url.rstrip("/")
    import logging
    logging.basicConfig(level=logging.WARNING)
    if not args.skip_latency:
        lat = measure_latency(args.samples, url)
        print(f"latency line -> Slack (run_every 30 s): median {statistics.median(lat):.1f} s, "
              f"max {max(lat):.1f} s, samples {[round(x, 1) for x in lat]}")
    if not args.skip_pass:
        res = measure_pass(args.docs, url)
        print(f"rule pass over {args.docs} documents: " + ", ".join(f"{k} {v[0]:.1f} s" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
