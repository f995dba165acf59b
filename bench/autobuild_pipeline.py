"""Pipeline overhead: tag push → pushed digest through autobuild, against the same steps by hand.

Both sides work on the same repository and the same engine and registry (the
session stack), alternating, each run with a fresh commit so the Dockerfile's
COPY and RUN really execute. By hand means: `git clone --depth 1 --branch TAG`,
`docker build` with the same OCI labels, `docker push` with Debian's docker CLI. Prints the median of N.

    .venv/bin/python bench/autobuild_pipeline.py [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from asci_core.config import load_config  # noqa: E402
from asci_core.stack.manager import StackManager  # noqa: E402
from registry.service import registry_access  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.integration.autobuild_support import (GitRemote, Serve, autobuild_config, deliver,  # noqa: E402
                                                 server_payload)

DOCKER = "/usr/bin/docker"
REPO = "BENCH/pipeline"


def dockerfile(base: str) -> str:
    return (f"FROM {base}\nCOPY version.txt /version.txt\n"
            "RUN cat /version.txt && ls -R /usr/share/doc > /doc-index.txt && wc -l /doc-index.txt\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    config = load_config()
    if not StackManager(config).up().ok:
        print("bench: the stack is not up (asci stack up)", file=sys.stderr)
        return 2
    access = registry_access(config)
    work = Path(tempfile.mkdtemp(prefix="asci-bench-pipeline-"))
    token = str(int(time.time()))
    image = f"asci-bench/pipeline-{token}"
    remote = GitRemote(work / "git")
    tree = remote.create(REPO, {"Dockerfile": dockerfile(config.stack.base_image.name), "version.txt": "0\n"})
    port = free_port()
    cfg = autobuild_config(work / "asci.yaml", config=config, workdir=work / "ab",
                           git_root=work / "git", port=port, concurrency=1,
                           repositories=[{"name": REPO, "image": image}])
    docker_config = work / "docker-config"
    docker_config.mkdir()
    env = {**os.environ, "DOCKER_CONFIG": str(docker_config)}
    subprocess.run([DOCKER, "login", "-u", access.username, "--password-stdin", access.address],
                   input=access.password.reveal(), text=True, env=env, check=True, capture_output=True)
    serve = Serve(cfg, port, work / "serve.log").start()
    auto, hand = [], []
    # Where the time goes, per run: autobuild's own stage records, and the same steps by hand.
    auto_parts: dict[str, list[float]] = {}
    hand_parts: dict[str, list[float]] = {}
    try:
        for i in range(1, args.runs + 1):
            tree.commit({"version.txt": f"auto {token} {i}\n"}, f"auto {i}")
            commit = tree.tag(f"v1.{i}.0")
            t0 = time.perf_counter()
            build_id = deliver(serve.url, server_payload(REPO, f"v1.{i}.0", commit)).json()["changes"][0]["build_id"]
            # One long-poll, answered when the build ends: polling every 20 ms cost CPU that the build
            # (on the same 2 cores) then lacked, and was counted as pipeline overhead.
            while (b := requests.get(f"{serve.url}/builds/{build_id}", params={"wait": "60"},
                                     timeout=90).json())["status"] not in ("succeeded", "failed"):
                pass
            auto.append(time.perf_counter() - t0)
            assert b["status"] == "succeeded", serve.log(build_id)
            stages = b["stages"]
            parts = {"queue": stages[0]["started_at"] - b["created_at"],
                     **{s["name"]: s["finished_at"] - s["started_at"] for s in stages},
                     "record": b["finished_at"] - stages[-1]["finished_at"]}
            for name, seconds in parts.items():
                auto_parts.setdefault(name, []).append(seconds)

            tree.commit({"version.txt": f"hand {token} {i}\n"}, f"hand {i}")
            tree.tag(f"v2.{i}.0")
            ref = f"{access.address}/{image}:v2.{i}.0"
            clone = work / f"hand-{i}"
            t0 = time.perf_counter()
            subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", f"v2.{i}.0",
                            (work / "git" / "BENCH" / "pipeline.git").as_uri(), str(clone)], check=True)
            t_clone = time.perf_counter()
            # The same image autobuild makes: the same OCI labels (the legacy builder adds them as one more step).
            sha = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], check=True, capture_output=True,
                                 text=True).stdout.strip()
            labels = {"org.opencontainers.image.source": "https://bitbucket.test.invalid/projects/BENCH/repos/pipeline",
                      "org.opencontainers.image.revision": sha, "org.opencontainers.image.version": f"v2.{i}.0",
                      "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
            label_args = [arg for k, v in labels.items() for arg in ("--label", f"{k}={v}")]
            t_build = time.perf_counter()
            subprocess.run([DOCKER, "build", "-q", *label_args, "-t", ref, str(clone)], env=env, check=True,
                           capture_output=True)
            t_push = time.perf_counter()
            pushed = subprocess.run([DOCKER, "push", ref], env=env, check=True, capture_output=True, text=True).stdout
            hand.append(time.perf_counter() - t0)
            for name, seconds in (("clone", t_clone - t0), ("build", t_push - t_build),
                                  ("push", time.perf_counter() - t_push)):
                hand_parts.setdefault(name, []).append(seconds)
            assert re.search(r"digest: sha256:[0-9a-f]{64}", pushed), pushed
            shutil.rmtree(clone)
            print(f"run {i}: autobuild {auto[-1]:.2f}s   by hand {hand[-1]:.2f}s", flush=True)
    finally:
        serve.stop()
    a, h = statistics.median(auto), statistics.median(hand)
    print(f"median of {args.runs}: autobuild {a:.2f}s, by hand {h:.2f}s, overhead {100 * (a - h) / h:+.1f} %")
    for side, parts in (("autobuild", auto_parts), ("by hand", hand_parts)):
        print(f"{side} by stage (medians): "
              + ", ".join(f"{name} {statistics.median(v):.3f}s" for name, v in parts.items()))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
