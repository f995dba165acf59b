"""Listing 1,000 tags from a real registry, and planning retention over 10,000 synthetic tags.

    .venv/bin/python bench/registry_retention.py

Starts a sandbox registry (own state dir and port; the shared stack's registry is
not touched), fills one repository with 1,000 tags, and prints wall and CPU time
(median of the runs) for: listing the tags; listing them with every digest (what
`retain` gathers); planning retention over 10,000 synthetic tags.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asci_core.config import load_config  # noqa: E402
from registry.client import DOCKER_MANIFEST, Manifest  # noqa: E402
from registry.deployed import DeployedSet  # noqa: E402
from registry.retention import TagInfo, collect_tags, plan_repository  # noqa: E402
from registry.settings import RetentionPolicy  # noqa: E402
from tests.support.sandbox import Sandbox  # noqa: E402

RUNS = 5


def measure(func: Callable[[], object], runs: int = RUNS) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        func()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def synthetic_tags(n: int) -> list[TagInfo]:
    rng = random.Random(42)
    now = _dt.datetime.now(_dt.timezone.utc)
    tags: list[TagInfo] = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.6:
            tag = f"v{rng.randrange(4)}.{rng.randrange(30)}.{i}"
        elif kind < 0.8:
            tag = f"v{rng.randrange(4)}.{rng.randrange(30)}.{i}-rc.{rng.randrange(12)}"
        elif kind < 0.9:
            tag = f"main-{i:07x}"
        else:
            tag = f"stable-{i}"
        # About one tag in ten shares a digest with another.
        digest = f"sha256:{rng.randrange(int(n * 0.9)):064x}"
        created = now - _dt.timedelta(days=rng.randrange(800))
        tags.append(TagInfo(tag, digest, created))
    return tags


def main() -> None:
    base = load_config()
    with tempfile.TemporaryDirectory(prefix="asci-bench-registry-") as tmp, Sandbox(base, Path(tmp)) as sb:
        client = sb.client()
        repo = "bench/listing"
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": [], "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
            "digest": client.upload_blob(repo, config)}}).encode()
        manifest = Manifest(repo, "sha256:" + hashlib.sha256(body).hexdigest(), DOCKER_MANIFEST, body)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: client.put_manifest(repo, f"v1.{i // 100}.{i % 100}", manifest), range(1000)))
        assert len(client.tags(repo)) == 1000
        list_wall, list_cpu = measure(lambda: client.tags(repo))
        digest_wall, digest_cpu = measure(lambda: collect_tags(client, repo, with_created=False), runs=3)

    tags = synthetic_tags(10_000)
    policy = RetentionPolicy(repository="bench/*", keep_last=20, keep_last_prereleases=5,
                             keep_tags=["latest", "stable-.*"], keep_days=30)
    deployed = DeployedSet(tags={("bench/plan", tags[123].tag): "bench"})
    now = _dt.datetime.now(_dt.timezone.utc)
    plan = plan_repository("bench/plan", tags, policy, deployed, now)
    plan_wall, plan_cpu = measure(lambda: plan_repository("bench/plan", tags, policy, deployed, now))

    print("registry retention benchmark (median of runs; sandbox Distribution 2.8 registry, token auth)")
    print(f"  list 1,000 tags (tags/list)                    wall {list_wall * 1000:8.1f} ms   cpu {list_cpu * 1000:8.1f} ms")
    print(f"  list 1,000 tags + digest of each (8 threads)   wall {digest_wall * 1000:8.1f} ms   cpu {digest_cpu * 1000:8.1f} ms")
    print(f"  plan retention over 10,000 synthetic tags      wall {plan_wall * 1000:8.1f} ms   cpu {plan_cpu * 1000:8.1f} ms"
          f"   (kept {len(plan.kept)}, deleted {len(plan.removed)} tags in {len(plan.delete_digests)} manifests)")


if __name__ == "__main__":
    main()
