"""Services: a git tag pushed -> the new version answering over HTTP, and requests failed during rolls.

    .venv/bin/python bench/services_roll.py [--rolls 10] [--replace start-first|stop-first] [--no-front]

A real `asci serve` (autobuild + the services runner) with one service following `patch` releases of
a trivial busybox httpd image (FROM asci/tiny) on a host port: owned by the service's front (the
default), or with --no-front published by the version itself. Each roll: commit, tag
v1.0.N, push to a local bare repository, deliver the signed Bitbucket webhook; the clock runs from
the delivery to the first answer of the new version on the host port (autobuild's clone, build, push,
then the roll: health-gated trial, swap, health check). Meanwhile one client sends requests to the
service back to back on fresh connections; every refused or failed one is counted.
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from asci_core.config import load_config  # noqa: E402
from asci_core.stack.docker_engine import docker_client  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.integration.autobuild_support import (GitRemote, Serve, autobuild_config, deliver,  # noqa: E402
                                                 server_payload)
from tests.integration.services_support import remove_service  # noqa: E402


def dockerfile(tiny: str, version: str) -> str:
    return (f"FROM {tiny}\nRUN mkdir /www && echo {version} > /www/version && touch /www/healthz\n"
            'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n')


class Load(threading.Thread):
    """Back-to-back GETs on fresh connections; counts what failed."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.ok, self.failed, self.stopping = url, 0, 0, False
        self.first_failure = self.last_failure = 0.0
        self.latencies: list[float] = []  # seconds per answered request: what the front adds
        self.kinds: collections.Counter[str] = collections.Counter()  # why requests failed

    def run(self) -> None:
        while not self.stopping:
            try:
                sent = time.monotonic()
                answer = requests.get(self.url, timeout=2, headers={"Connection": "close"})
                if answer.status_code == 200:
                    self.latencies.append(time.monotonic() - sent)
                    self.ok += 1
                else:
                    self.failed += 1
                    self.kinds[f"HTTP {answer.status_code}"] += 1
            except requests.RequestException as exc:
                self.failed += 1
                self.kinds[type(exc).__name__] += 1
                self.last_failure = time.monotonic()
                self.first_failure = self.first_failure or self.last_failure

    @property
    def gap(self) -> float:
        """Seconds from the first failed request to the last: how long the port did not answer."""
        return self.last_failure - self.first_failure


def wait_answer(url: str, version: str, timeout: float = 180) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).text.strip() == version:
                return time.monotonic()
        except requests.RequestException:
            pass
        time.sleep(0.02)  # the bench's resolution: 20 ms
    raise SystemExit(f"{version} did not answer within {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rolls", type=int, default=10)
    parser.add_argument("--replace", choices=("start-first", "stop-first"), default="start-first")
    parser.add_argument("--no-front", action="store_true", help="the version publishes the port itself")
    args = parser.parse_args()
    config = load_config()
    token = uuid.uuid4().hex[:8]
    repo, image, name = f"TB/bench-{token}", f"asci-bench/svc-{token}", f"bench_{token}"
    with tempfile.TemporaryDirectory(prefix="asci-bench-services-") as tmp:
        root = Path(tmp)
        port, web_port = free_port(), free_port()
        path = autobuild_config(root / "asci.yaml", config=config, workdir=root / "work", git_root=root / "git",
                                port=port, repositories=[{"name": repo, "image": image}])
        data = yaml.safe_load(path.read_text())
        data["services"] = {"workdir": str(root / "services"), "check_interval": 3600, "definitions": [{
            "name": name, "repository": image, "tag": "v1.0.0", "follow": "patch", "replace": args.replace,
            "ports": [{"container": 8080, "host": web_port, "host_ip": "127.0.0.1"}],
            "front": {"enabled": not args.no_front},
            "health": {"http_path": "/healthz", "interval": 0.1, "timeout": 2, "wait": 20}}]}
        path.write_text(yaml.safe_dump(data))
        tiny = config.stack.base_image.tiny_name
        tree = GitRemote(root / "git").create(repo, {"Dockerfile": dockerfile(tiny, "v1.0.0")})
        serve = Serve(path, port, root / "serve.log").start()
        url = f"http://127.0.0.1:{web_port}/version"
        seconds, failures, gaps, latencies, longest = [], [], [], [], []
        kinds: collections.Counter[str] = collections.Counter()
        try:
            commit = tree.tag("v1.0.0")
            deliver(serve.url, server_payload(repo, "v1.0.0", commit))
            deadline = time.monotonic() + 180
            while True:  # the first deploy, by hand, once v1.0.0 is built
                out = subprocess.run([str(Path(sys.executable).with_name("asci")), "-c", str(path), "services",
                                      "deploy"], capture_output=True, text=True)
                if out.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(out.stderr)
                time.sleep(1)
            wait_answer(url, "v1.0.0")
            for n in range(1, args.rolls + 1):
                version = f"v1.0.{n}"
                tree.commit({"Dockerfile": dockerfile(tiny, version)}, version)
                commit = tree.tag(version)
                load = Load(url)
                load.start()
                start = time.monotonic()
                deliver(serve.url, server_payload(repo, version, commit))
                seconds.append(wait_answer(url, version) - start)
                time.sleep(0.5)  # keep the load on past the swap: the old container is removed after it
                load.stopping = True
                load.join()
                failures.append(load.failed)
                gaps.append(load.gap)
                latencies.extend(load.latencies)
                longest.append(max(load.latencies, default=0.0))
                kinds.update(load.kinds)
                print(f"{version}: {seconds[-1]:.2f} s, {load.failed} failed of {load.ok + load.failed} requests, "
                      f"gap {load.gap * 1000:.0f} ms, longest answered request {longest[-1] * 1000:.0f} ms",
                      flush=True)
            out = subprocess.run([str(Path(sys.executable).with_name("asci")), "-c", str(path), "services",
                                  "history", name, "--json"], capture_output=True, text=True, check=True)
            rolls = [r["duration"] for r in json.loads(out.stdout) if r["trigger"] == "autobuild"]
        finally:
            serve.stop()
            client = docker_client(config.stack.docker.socket)
            remove_service(client, name)
            client.close()
    mode = f"{args.replace}, {'no front' if args.no_front else 'front'}"
    print(f"tag pushed -> new version answering ({mode}): p50 {statistics.median(seconds):.2f} s, "
          f"min {min(seconds):.2f} s, max {max(seconds):.2f} s over {len(seconds)} rolls")
    print(f"of which the roll itself (pull, start, health check, switch, drain; `asci services history`): "
          f"p50 {statistics.median(rolls):.2f} s")
    print(f"failed requests per roll: median {statistics.median(failures)}, max {max(failures)}, "
          f"total {sum(failures)}; gap (first to last failure) p50 {statistics.median(gaps) * 1000:.0f} ms, "
          f"max {max(gaps) * 1000:.0f} ms; kinds: {dict(kinds) or 'none'}")
    print(f"longest answered request per roll (behind the front: held while no version answers): "
          f"p50 {statistics.median(longest) * 1000:.0f} ms, max {max(longest) * 1000:.0f} ms")
    latencies.sort()
    print(f"request latency during the rolls: p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, max {latencies[-1] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
