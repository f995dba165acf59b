"""Create → first successful VNC login: through the sessions API, and by hand, in the same run.

    .venv/bin/python bench/launcher_sessions.py [--sequential 20] [--concurrent 10]

API path: `POST /api/v1/sessions` (desktop-base, the embedded default environment's settings,
`account: image`), `POST /sessions/{id}/connect`, then a VNC login with the returned address and
one-time password, retried every 10 ms until it succeeds; the session is deleted afterwards
(not timed). The API is served for real on a loopback port, in this process (as the test suite
serves it), with a scope label so it never sees or reconciles anyone else's sessions.
By-hand path: `docker run -d` of the same image with a password file, then the same login loop
(bench/images.py's start_to_login). The image is warm (built by `asci images build desktop-base`);
the node is the local engine. Both paths run one after the other for each sample, then
CONCURRENT at once each, so load on the shared machine hits both alike.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from asci_core.config import load_config  # noqa: E402
from asci_core.stack.docker_engine import docker_client  # noqa: E402
from bench.images import PASSWORD, percentile, start_to_login  # noqa: E402
from registry.service import registry_access  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.integration.launcher_api_support import ServedApi  # noqa: E402
from tests.integration.rfb_client import AuthFailed, RfbClient  # noqa: E402

USERS = 10


def token(i: int) -> str:
    return f"bench-user-{i}-" + "x" * 32


def write_config(folder: Path, socket_path: str) -> Path:
    users = [{"name": f"bench{i}", "uid": 6100 + i, "gid": 6100 + i} for i in range(USERS)]
    (folder / "users.yaml").write_text(yaml.safe_dump({"users": users}))
    path = folder / "asci.yaml"
    path.write_text(yaml.safe_dump({
        "server": {"port": free_port()},
        "launcher": {
            "workdir": str(folder / "launcher"), "users_file": str(folder / "users.yaml"), "stop_timeout": 2,
            "max_sessions_per_user": 4, "engine_timeout": 30.0,
            # Room for the concurrent round on a 2-core machine: the benchmark measures start-up, not admission.
            "nodes": [{"name": "local", "url": f"unix://{socket_path}", "cpus": 64, "memory": "64g", "gpus": 0}],
            "environments": [{"name": "desktop-base", "title": "Debian desktop",
                              "image": "{registry}/bl/desktop-base:latest", "cpus": 2, "memory": "2g",
                              "shm_size": "256m", "account": "image"}]},
        "launcher_api": {"tokens": [{"user": f"bench{i}", "token": token(i)} for i in range(USERS)],
                         "create_burst": 1000, "creates_per_minute": 100000, "workers": 16},
    }))
    return path


def login_until(address: str, password: str, started: float) -> float:
    deadline = started + 60
    while True:
        try:
            with RfbClient(address, timeout=2) as client:
                client.login(password)
            return time.monotonic() - started
        except AuthFailed:
            raise
        except (OSError, ConnectionError):
            if time.monotonic() > deadline:
                raise RuntimeError("no VNC login within 60 s") from None
            time.sleep(0.01)


def through_api(api: ServedApi, user: int) -> float:
    started = time.monotonic()
    created = api.call("POST", "/sessions", token=token(user), json={"environment": "desktop-base"})
    if created.status_code != 201:
        raise RuntimeError(f"create: HTTP {created.status_code} {created.text[:200]}")
    session = created.json()["id"]
    try:
        answer = api.call("POST", f"/sessions/{session}/connect", token=token(user))
        if answer.status_code != 200:
            raise RuntimeError(f"connect: HTTP {answer.status_code} {answer.text[:200]}")
        body = answer.json()
        return login_until(body["address"], body["password"], started)
    finally:
        api.call("DELETE", f"/sessions/{session}", token=token(user))


def by_hand(client, ref: str, secret: Path) -> float:
    return start_to_login(client, ref, secret)[0]


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<34} n={len(values):<3} p50 {statistics.median(values):6.3f} s   "
            f"p95 {percentile(values, 95):6.3f} s   max {max(values):6.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=10)
    args = parser.parse_args()
    config = load_config(None)
    access = registry_access(config)
    ref = f"{access.address}/bl/desktop-base:latest"
    client = docker_client(config.stack.docker.socket)
    client.images.get(ref)  # warm image: fails here when `asci images build desktop-base` never ran
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        secret = folder / "vnc"
        secret.write_text(PASSWORD + "\n")
        secret.chmod(0o644)
        api = ServedApi(write_config(folder, str(config.stack.docker.socket)),
                        {"asci.bench": f"launcher-sessions-{uuid.uuid4().hex[:8]}"}).start()
        try:
            through_api(api, 0), by_hand(client, ref, secret)  # unmeasured: page cache, first connections
            api_seq, hand_seq = [], []
            for i in range(args.sequential):
                api_seq.append(through_api(api, i % USERS))
                hand_seq.append(by_hand(client, ref, secret))
            with ThreadPoolExecutor(args.concurrent) as pool:
                api_con = list(pool.map(lambda i: through_api(api, i % USERS), range(args.concurrent)))
            with ThreadPoolExecutor(args.concurrent) as pool:
                hand_con = list(pool.map(lambda _: by_hand(client, ref, secret), range(args.concurrent)))
        finally:
            api.stop()
    print(f"create → first VNC login, {ref}, local node")
    print(summary("API, sequential", api_seq))
    print(summary("by hand (docker run), sequential", hand_seq))
    print(summary(f"API, {args.concurrent} concurrent", api_con))
    print(summary(f"by hand, {args.concurrent} concurrent", hand_con))
    added = statistics.median(api_seq) - statistics.median(hand_seq)
    print(f"API adds at p50 (sequential): {added:+.3f} s (goal ≤ 0.25 s); "
          f"concurrent: {statistics.median(api_con) - statistics.median(hand_con):+.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
