"""Promotion inside the registry versus pull + tag + push with the docker CLI, side by side.

    .venv/bin/python bench/registry_promotion.py [--layers 6] [--layer-mb 16] [--runs 3]

Builds a multi-layer image (random, incompressible layers) from the local
`asci/tiny`, pushes it to a sandbox registry (own state dir and port), then for
each run promotes it to a new repository with RegistryClient.promote (manifest
fetch, cross-repository blob mounts, manifest put) and, separately, does what one
would do by hand: `docker pull`, `docker tag`, `docker push` (the local image is
removed first so the pull is real). The docker CLI logs in with its own
DOCKER_CONFIG folder, so the user's ~/.docker is not touched.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asci_core.config import load_config  # noqa: E402
from asci_core.stack.docker_engine import docker_client  # noqa: E402
from tests.support.sandbox import Sandbox  # noqa: E402

LABELS = {"asci.bench": "registry-promotion"}


def docker_cli() -> str:
    for candidate in ("/usr/local/bin/docker", "/usr/bin/docker"):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("docker")
    if not found:
        sys.exit("no docker CLI found")
    return found


def run(argv: list[str], env: dict[str, str], stdin: str | None = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--layer-mb", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    base = load_config()
    engine = docker_client(base.stack.docker.socket, timeout=600)
    cli = docker_cli()
    with tempfile.TemporaryDirectory(prefix="asci-bench-promote-") as tmp, Sandbox(base, Path(tmp) / "sb") as sb:
        address, access = sb.address, sb.access
        src = f"{address}/bench/testing"
        steps = "".join(f"RUN head -c {args.layer_mb * 1024 * 1024} /dev/urandom > /layer{i}\n"
                        for i in range(args.layers))
        dockerfile = f"FROM {base.stack.base_image.tiny_name}\n{steps}"
        engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=f"{src}:v1", rm=True, labels=LABELS)
        errors = [line for line in engine.api.push(src, "v1", stream=True, decode=True,
                                                   auth_config=access.auth_config()) if "error" in line]
        if errors:
            sys.exit(f"push failed: {errors[-1]}")
        engine.images.remove(f"{src}:v1", force=True)
        client = sb.client()
        size = client.get_manifest("bench/testing", "v1").size()

        env = {**os.environ, "DOCKER_CONFIG": str(Path(tmp) / "docker-config")}
        run([cli, "login", "--username", access.username, "--password-stdin", address], env,
            stdin=access.password.reveal())

        promote_times: list[float] = []
        cli_times: list[tuple[float, float, float]] = []
        for i in range(args.runs):
            t0 = time.perf_counter()
            client.promote("bench/testing:v1", f"bench/production-api-{i}:v1")
            promote_times.append(time.perf_counter() - t0)

            dst = f"{address}/bench/production-cli-{i}"
            pull = run([cli, "pull", "-q", f"{src}:v1"], env)
            tag = run([cli, "tag", f"{src}:v1", f"{dst}:v1"], env)
            push = run([cli, "push", f"{dst}:v1"], env)
            cli_times.append((pull, tag, push))
            run([cli, "rmi", "-f", f"{src}:v1", f"{dst}:v1"], env)

        med = statistics.median
        pull_s, tag_s, push_s = (med(t[k] for t in cli_times) for k in range(3))
        total_cli = med(sum(t) for t in cli_times)
        total_api = med(promote_times)
        print(f"promotion benchmark: {args.layers + 1}-layer image, {size / 1e6:.1f} MB compressed, "
              f"median of {args.runs} runs, sandbox registry on loopback")
        print(f"  asci registry promote (mount + manifest put)   {total_api:7.3f} s")
        print(f"  docker pull + tag + push                       {total_cli:7.3f} s   "
              f"(pull {pull_s:.3f} s, tag {tag_s:.3f} s, push {push_s:.3f} s)")
        print(f"  speed-up                                       {total_cli / total_api:7.1f} x")
    engine.close()


if __name__ == "__main__":
    main()
