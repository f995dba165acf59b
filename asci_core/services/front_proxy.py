"""asci-front: the long-lived TCP front of one service; it owns the published ports, forwards to one backend.

Runs inside the front container (`front.py` builds it FROM debian:bookworm with Debian's python3),
so it uses the standard library only and imports nothing of ASCI.

    asci-front serve --ports 8080,9090 [--hold 10]   listen on these ports, forward each to BACKEND:same port
    asci-front switch BACKEND                         new connections go to BACKEND from now on
    asci-front switch -                               new connections are held (a stop-first roll)
    asci-front drain BACKEND SECONDS                  wait until no connection to BACKEND is open (bounded)
    asci-front show                                   the current backend and the open connections
    asci-front check BACKEND PORT PATH SECONDS        GET http://BACKEND:PORT/PATH; exit 0 on a 2xx answer

The control commands speak one line each way over a Unix socket inside the container; the roll runs
them with `docker exec`, which reaches the front on any node through its engine; `check` is the
service's HTTP health check made from inside the service network, so it needs no route from the
host that runs `asci serve` to the node's containers. The backend is a
container name resolved by the engine's DNS on the service network, so it survives the backend's
restarts; it is kept in a file so a restart of the front (or of the engine) keeps it.

A connection counts against its backend from the moment the backend is chosen, before connecting:
once `switch` has answered, `drain OLD` waits for every connection that could still reach OLD.
While no backend answers (a stop-first gap, a version starting or stopping) a new connection is held
and the backend retried, re-reading the current one each time, for up to `--hold` seconds. A backend
whose name the engine's DNS does not resolve has no running container (it crashed, or was stopped):
the client's connection is closed at once rather than held for a restart that may not come.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import json
import os
import re
import socket
import sys
import time

STATE = "/var/lib/asci-front/backend"
CONTROL = "/run/asci-front/control.sock"
BACKEND = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")
RETRY = 0.05  # seconds between attempts to reach a backend that does not answer yet
CHUNK = 65536
Upstream = tuple[str, asyncio.StreamReader, asyncio.StreamWriter]  # backend name, its two streams


def say(message: str, **fields: object) -> None:
    print(json.dumps({"level": "info", "component": "asci-front", "message": message, **fields}), flush=True)


class Front:
    def __init__(self, ports: list[int], state: str, hold: float):
        self.ports, self.state, self.hold = ports, state, hold
        self.backend = self._read_state()
        self.open: collections.Counter[str] = collections.Counter()
        self.held = 0  # connections waiting for a backend that answers
        self.changed = asyncio.Condition()

    def _read_state(self) -> str | None:
        try:
            with open(self.state, encoding="utf-8") as f:
                name = f.read().strip()
        except FileNotFoundError:
            return None
        return name if BACKEND.fullmatch(name) else None

    def _write_state(self, name: str) -> None:
        """NAME, or an empty file for no backend."""
        partial = f"{self.state}.new"
        with open(partial, "w", encoding="utf-8") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, self.state)  # atomic: a restart reads the old name or the new one

    # --- forwarding ---------------------------------------------------------------------

    async def _connect(self, port: int) -> Upstream | str:
        """The upstream connection, or why there is none. A backend that refuses (starting, stopping) or is
        not named (a stop-first roll) is retried for up to `--hold` seconds; one whose name the engine does
        not resolve has no running container — it crashed or was stopped — and its client is told at once
        instead of waiting for a restart that may never come."""
        deadline = time.monotonic() + self.hold
        counted = False
        try:
            while True:
                backend = self.backend
                if backend is not None:
                    try:
                        upstream = await self._attempt(backend, port, deadline)
                    except socket.gaierror:
                        return "backend not running; connection closed"
                    if upstream is not None:
                        return upstream
                if time.monotonic() >= deadline:
                    return "no backend answered; connection closed"
                if not counted:
                    self.held, counted = self.held + 1, True
                await asyncio.sleep(RETRY)  # the current backend again: a switch may have come
        finally:
            if counted:
                self.held -= 1

    async def _attempt(self, backend: str, port: int, deadline: float) -> Upstream | None:
        self.open[backend] += 1  # counted before connecting: `drain` must see it from this moment
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(backend, port),
                                                    timeout=max(0.1, deadline - time.monotonic()))
        except socket.gaierror:
            await self._release(backend)
            raise
        except (OSError, asyncio.TimeoutError):
            await self._release(backend)
            return None
        return backend, reader, writer

    async def _release(self, backend: str) -> None:
        self.open[backend] -= 1
        if self.open[backend] <= 0:
            del self.open[backend]
            async with self.changed:
                self.changed.notify_all()

    async def forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, port: int) -> None:
        upstream = await self._connect(port)
        if isinstance(upstream, str):
            say(upstream, port=port, backend=self.backend, hold_s=self.hold)
            client_w.close()
            return
        backend, up_r, up_w = upstream
        try:
            await _splice(client_r, client_w, up_r, up_w)
        finally:
            await self._release(backend)

    # --- control --------------------------------------------------------------------------

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), timeout=5)).decode("utf-8", "replace").split()
            writer.write((await self._command(line) + "\n").encode())
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _command(self, words: list[str]) -> str:
        if words[:1] == ["show"]:
            return "ok " + json.dumps({"backend": self.backend, "open": dict(self.open), "held": self.held})
        if len(words) == 2 and words[0] == "switch" and (BACKEND.fullmatch(words[1]) or words[1] == "-"):
            previous, self.backend = self.backend, None if words[1] == "-" else words[1]
            self._write_state(self.backend or "")
            say("switched", backend=self.backend, previous=previous)
            return f"ok {previous or '-'}"
        if len(words) == 3 and words[0] == "drain" and BACKEND.fullmatch(words[1]):
            try:
                seconds = min(max(float(words[2]), 0.0), 3600.0)
            except ValueError:
                return "error drain needs seconds"
            left = await self._drain(words[1], seconds)
            return f"ok {left}"
        return "error expected: show | switch BACKEND|- | drain BACKEND SECONDS"

    async def _drain(self, backend: str, seconds: float) -> int:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: self.open[backend] == 0), timeout=seconds)
            except asyncio.TimeoutError:
                pass
            return self.open[backend]


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(CHUNK):
        dst.write(data)
        await dst.drain()
    if dst.can_write_eof():
        dst.write_eof()  # half-close: the other direction may still be answering


async def _splice(a_r: asyncio.StreamReader, a_w: asyncio.StreamWriter,
                  b_r: asyncio.StreamReader, b_w: asyncio.StreamWriter) -> None:
    tasks = [asyncio.ensure_future(_pipe(a_r, b_w)), asyncio.ensure_future(_pipe(b_r, a_w))]
    try:
        # Both directions to their end; a reset on either side ends both.
        for done in asyncio.as_completed(tasks):
            try:
                await done
            except (ConnectionError, OSError):
                break
    finally:
        for task in tasks:
            task.cancel()
        for writer in (a_w, b_w):
            writer.close()


async def serve(ports: list[int], state: str, control: str, hold: float, listen: str | None = None) -> None:
    front = Front(ports, state, hold)
    servers = []
    for port in ports:
        servers.append(await asyncio.start_server(
            lambda r, w, port=port: front.forward(r, w, port), host=listen, port=port, reuse_address=True,
            backlog=1024))
    if os.path.exists(control):
        os.unlink(control)  # left by a previous run of this container
    servers.append(await asyncio.start_unix_server(front.control, path=control))
    os.chmod(control, 0o600)
    say("listening", ports=ports, backend=front.backend, hold_s=hold)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def ask(control: str, words: list[str], timeout: float) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(control)
        conn.sendall((" ".join(words) + "\n").encode())
        answer = conn.makefile("r", encoding="utf-8").readline().strip()
    print(answer)
    return 0 if answer.startswith("ok") else 1


def check(backend: str, port: int, path: str, timeout: float) -> int:
    connection = http.client.HTTPConnection(backend, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        print(f"error {path} did not answer ({type(exc).__name__})")
        return 1
    finally:
        connection.close()
    print(f"{'ok' if 200 <= status < 300 else 'error'} {path} answered {status}")
    return 0 if 200 <= status < 300 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asci-front")
    parser.add_argument("--control", default=CONTROL)
    actions = parser.add_subparsers(dest="action", required=True)
    p = actions.add_parser("serve")
    p.add_argument("--ports", required=True, type=lambda s: [int(p) for p in s.split(",")])
    p.add_argument("--hold", type=float, default=10.0)
    p.add_argument("--state", default=STATE)
    p.add_argument("--listen", default=None, help="address to listen on (default: all)")
    p = actions.add_parser("switch")
    p.add_argument("backend")
    p = actions.add_parser("drain")
    p.add_argument("backend")
    p.add_argument("seconds", type=float)
    actions.add_parser("show")
    p = actions.add_parser("check")
    p.add_argument("backend")
    p.add_argument("port", type=int)
    p.add_argument("path")
    p.add_argument("timeout", type=float)
    args = parser.parse_args(argv)
    if args.action == "check":
        if not BACKEND.fullmatch(args.backend) or not args.path.startswith("/"):
            print("error expected: check BACKEND PORT /PATH SECONDS")
            return 2
        return check(args.backend, args.port, args.path, args.timeout)
    if args.action == "serve":
        try:
            asyncio.run(serve(args.ports, args.state, args.control, args.hold, args.listen))
        except KeyboardInterrupt:
            pass
        return 0
    words = [args.action] + ([args.backend] if hasattr(args, "backend") else []) + (
        [repr(args.seconds)] if hasattr(args, "seconds") else [])
    return ask(args.control, words, timeout=(args.seconds + 10) if hasattr(args, "seconds") else 10)


if __name__ == "__main__":
    sys.exit(main())
