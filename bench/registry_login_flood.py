"""Real logins while 16 clients flood the token service with wrong passwords.

    .venv/bin/python bench/registry_login_flood.py [--seconds 30] [--clients 16]

Starts a sandbox registry (own state dir and port; the shared stack's registry is
not touched). Each flooding client speaks from its own loopback address
(127.0.0.100+i) and sends wrong passwords as fast as it is answered, half for the
generated admin and half for names that do not exist. Meanwhile one honest client
(127.0.0.2) logs in once a second: "cold" logins (a user not seen before, so a
full bcrypt check) and "warm" ones (the same user again). Prints the latencies,
the flood's answers, and, on a quiet service, a login with an over-long password
for a known and an unknown user (which must take the same time).
"""
from __future__ import annotations

import argparse
import base64
import os
import multiprocessing
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import bcrypt
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asci_core.config import load_config  # noqa: E402
from tests.support.sandbox import Sandbox  # noqa: E402
from registry.users import Role, UserStore  # noqa: E402


def token_url(sb: Sandbox) -> str:
    challenge = urllib3.PoolManager().request("GET", f"{sb.access.url}/v2/").headers["WWW-Authenticate"]
    return challenge.split('realm="', 1)[1].split('"', 1)[0]


def login(pool: urllib3.PoolManager, url: str, user: str, password: str) -> tuple[int, float]:
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    t0 = time.perf_counter()
    status = pool.request("GET", f"{url}?service=asci-registry&scope=registry:catalog:*",
                          headers={"Authorization": auth}).status
    return status, time.perf_counter() - t0


def pool_from(address: str) -> urllib3.PoolManager:
    return urllib3.PoolManager(source_address=(address, 0), retries=False, timeout=60)


def summary(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return f"n={len(ms)} median {statistics.median(ms):.0f} ms, p90 {p90:.0f} ms, max {ms[-1]:.0f} ms"


def flood_all(url: str, clients: int, stop, results) -> None:
    answers: Counter[int] = Counter()
    lock = threading.Lock()

    def flood(i: int) -> None:
        pool = pool_from(f"127.0.0.{100 + i}")
        target = "asci-admin" if i % 2 == 0 else f"nobody-{i}"
        n = 0
        while not stop.is_set():
            status, _ = login(pool, url, target, f"wrong-{n}")
            n += 1
            with lock:
                answers[status] += 1

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(answers)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--clients", type=int, default=16)
    args = p.parse_args()
    logins = int(args.seconds) + 5
    with tempfile.TemporaryDirectory(prefix="asci-bench-login-") as tmp, \
            Sandbox(load_config(), Path(tmp)) as sb:
        url = token_url(sb)
        store = UserStore(sb.config.stack.state_dir / "registry")
        users = {f"bench-user-{i}": secrets.token_urlsafe(18) for i in range(2 * logins + 10)}
        for name, password in users.items():
            store.add(name, Role.PULL, password)
        names = iter(users)
        honest = pool_from("127.0.0.2")

        quiet_cold = [login(honest, url, n, users[n]) for n in [next(names) for _ in range(5)]]
        assert all(s == 200 for s, _ in quiet_cold), quiet_cold

        stop = multiprocessing.Event()
        results: multiprocessing.Queue = multiprocessing.Queue()
        # The flood runs in its own process, so the honest client's timing is not its GIL's.
        flooder = multiprocessing.Process(target=flood_all, args=(url, args.clients, stop, results))
        flooder.start()
        time.sleep(2)  # let the flood reach its steady state before measuring
        cold, warm = [], []
        warm_user = next(names)
        assert login(honest, url, warm_user, users[warm_user])[0] == 200
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            user = next(names)
            status, took = login(honest, url, user, users[user])
            assert status == 200, status
            cold.append(took)
            status, took = login(honest, url, warm_user, users[warm_user])
            assert status == 200, status
            warm.append(took)
            if time.monotonic() > deadline + 60:
                break
            time.sleep(max(0.0, 1.0 - cold[-1] - warm[-1]))
        stop.set()
        answers: Counter[int] = results.get(timeout=120)
        flooder.join(timeout=60)

        known, unknown = [], []
        long_answers: dict[str, Counter[int]] = {"known": Counter(), "unknown": Counter()}
        for i in range(10):
            # Each from its own address, so no throttle is involved.
            for bucket, user, kind in ((known, "asci-admin", "known"), (unknown, "nobody-at-all", "unknown")):
                status, took = login(pool_from(f"127.0.1.{2 * i + (bucket is unknown) + 1}"), url, user, "p" * 80)
                long_answers[kind][status] += 1
                bucket.append(took)

        hashed = bcrypt.hashpw(b"x", bcrypt.gensalt())
        bare = []
        for _ in range(5):
            t0 = time.perf_counter()
            bcrypt.checkpw(b"y", hashed)
            bare.append(time.perf_counter() - t0)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; one bare bcrypt check "
              f"(cost 12) here: {summary(bare)}")
        print(f"quiet service, cold login: {summary([t for _, t in quiet_cold])}")
        print(f"during a flood of {args.clients} clients ({args.seconds:g} s):")
        print(f"  honest cold login (full bcrypt check): {summary(cold)}")
        print(f"  honest warm login (remembered):        {summary(warm)}")
        total = sum(answers.values())
        print(f"  flood answers: {total} ({total / (args.seconds + 2):.0f}/s): " +
              ", ".join(f"{code}: {count}" for code, count in sorted(answers.items())))
        print(f"80-byte password, known user:   {summary(known)}  answers {dict(long_answers['known'])}")
        print(f"80-byte password, unknown user: {summary(unknown)}  answers {dict(long_answers['unknown'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
