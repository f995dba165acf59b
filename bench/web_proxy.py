"""Viewer relay throughput and added latency, side by side: direct TCP, Debian's websockify, ASCI's proxy.

One upstream stands in for Xvnc: it does the RFB 3.8 VncAuth handshake with a known
password, then either streams bytes (throughput) or echoes (latency). Each path is
measured from this process (the client); the upstream, websockify and `asci`'s proxy
run as separate processes, so the relays do not share the client's interpreter.
The ASCI proxy runs the real web app (asci_core.web) with its real token, cookie and
RFB code, served the way `asci serve` serves it (uvloop, the guarded runner); only the
launcher is a stand-in answering "ready" (no Docker in the loop).

Like with like: the same upstream, the same client code (aiohttp, no compression) and the
same payload for every path; each round measures the three paths in a rotated order, and
the figures are medians over the rounds (a shared machine's noise hits every path alike).
Besides MB/s the relays' own CPU time per GB relayed is printed (websockify's forked
per-connection children included): it does not depend on what else runs on the machine.

    .venv/bin/python bench/web_proxy.py [--megabytes 512] [--pings 500] [--rounds 5] [--viewers 50]

Needs Debian's websockify (apt-get install websockify).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.procstat import cpu_seconds, status_kib  # noqa: E402

PASSWORD = "benchpw1"
CHUNK = 64 * 1024
SESSION = "0123456789abcdef"
MESSAGE_SIZES: list[float] = []  # mean WebSocket message size of each streamed run, as the client saw it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the upstream (a child process) ------------------------------------------

async def upstream_main(port: int, megabytes: int) -> None:
    from asci_core.web.rfb import vnc_auth_response

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"RFB 003.008\n")
            await reader.readexactly(12)
            writer.write(b"\x01\x02")
            await reader.readexactly(1)
            challenge = secrets.token_bytes(16)
            writer.write(challenge)
            ok = await reader.readexactly(16) == vnc_auth_response(PASSWORD, challenge)
            writer.write(struct.pack(">I", 0 if ok else 1))
            if not ok:
                return
            mode = await reader.readexactly(1)  # the "ClientInit": b"B" bulk, b"E" echo
            if mode == b"B":
                block = os.urandom(CHUNK)
                for _ in range(megabytes * 1024 * 1024 // CHUNK):
                    writer.write(block)
                    await writer.drain()
            else:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# --- ASCI's proxy (a child process) ------------------------------------------

class ReadyLauncher:
    """Stand-in launcher: one ready session, activity reports accepted."""

    class _Record:
        state = "ready"

    def show(self, session_id, as_user=None):
        return self._Record()

    def touch(self, session_id, when=None):
        pass


def asci_main(port: int, upstream: int, token_file: Path) -> None:
    import uvloop
    from aiohttp import web

    from asci_core.http_guard import GuardedRunner

    from asci_core.config_base import Secret
    from asci_core.launcher.directory import Researcher
    from asci_core.launcher.sessions import Connection
    from asci_core.web.app import install
    from asci_core.web.settings import WebSettings
    from asci_core.web.state import WebState

    state = WebState.build(WebSettings(max_viewers_per_user=1000, max_message_bytes=4 * 1024 * 1024),
                           ReadyLauncher(), accounts=None)
    cookie, _ = state.logins.open(Researcher("bench", 5000, 5000), "127.0.0.1")
    connection = Connection(SESSION, "local", "127.0.0.1", upstream, Secret(PASSWORD, "bench"))
    tokens = [state.tokens.issue("bench", SESSION, connection) for _ in range(1000)]
    state.tokens.ttl = 3600
    token_file.write_text("\n".join([cookie, *tokens]))
    app = web.Application()
    install(app, state)

    async def serve() -> None:  # as asci_core.server.serve does it
        runner = GuardedRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    uvloop.run(serve())


# --- the client -------------------------------------------------------------

async def vnc_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    from asci_core.web.rfb import authenticate_upstream
    await authenticate_upstream(reader, writer, PASSWORD)


async def direct(port: int, mode: bytes, pings: int, megabytes: int) -> tuple[float, list[float]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await vnc_login(reader, writer)
    writer.write(mode)
    result = await _measure_stream(reader, writer, mode, pings, megabytes)
    writer.close()
    return result


async def _measure_stream(reader, writer, mode, pings, megabytes):
    if mode == b"B":
        total, start = 0, time.perf_counter()
        while data := await reader.read(262144):
            total += len(data)
        return total / (time.perf_counter() - start) / 1e6, []
    times = []
    for _ in range(pings):
        start = time.perf_counter()
        writer.write(b"p")
        await reader.readexactly(1)
        times.append(time.perf_counter() - start)
    return 0.0, times


class WsStream:
    """RFB over a WebSocket, as a byte stream."""

    def __init__(self, ws):
        self.ws, self.buffer = ws, b""

    async def read(self, n: int) -> bytes:
        import aiohttp
        if not self.buffer:
            msg = await self.ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                return b""
            self.buffer = msg.data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    async def readexactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            piece = await self.read(n - len(out))
            if not piece:
                raise asyncio.IncompleteReadError(out, n)
            out += piece
        return out


async def over_websocket(url: str, headers: dict, protocols: tuple, mode: bytes, pings: int, megabytes: int,
                         asci: bool) -> tuple[float, list[float]]:
    import aiohttp
    async with aiohttp.ClientSession() as client:
        async with client.ws_connect(url, headers=headers, protocols=protocols, max_msg_size=0,
                                     compress=0) as ws:
            stream = WsStream(ws)
            if asci:  # the proxy did VncAuth; the browser side is security None
                await stream.readexactly(12)
                await ws.send_bytes(b"RFB 003.008\n")
                await stream.readexactly(2)
                await ws.send_bytes(b"\x01")
                await stream.readexactly(4)
            else:
                from asci_core.web.rfb import vnc_auth_response
                await stream.readexactly(12)
                await ws.send_bytes(b"RFB 003.008\n")
                await stream.readexactly(2)
                await ws.send_bytes(b"\x02")
                challenge = await stream.readexactly(16)
                await ws.send_bytes(vnc_auth_response(PASSWORD, challenge))
                await stream.readexactly(4)
            await ws.send_bytes(mode)
            if mode == b"B":
                total, start = len(stream.buffer), time.perf_counter()
                stream.buffer = b""
                messages = 0
                while True:
                    msg = await ws.receive()
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        break
                    total += len(msg.data)
                    messages += 1
                MESSAGE_SIZES.append(total / max(1, messages))
                return total / (time.perf_counter() - start) / 1e6, []
            times = []
            for _ in range(pings):
                start = time.perf_counter()
                await ws.send_bytes(b"p")
                await stream.readexactly(1)
                times.append(time.perf_counter() - start)
            return 0.0, times


PATHS = ["direct", "websockify", "asci"]


def _children_alive(pid: int) -> bool:
    return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {port}")
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5, help="each round measures every path once, order rotated")
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--viewers", type=int, default=50, help="concurrent viewers relaying through ASCI at once")
    parser.add_argument("--role", choices=["client", "upstream", "asci"], default="client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "upstream":
        asyncio.run(upstream_main(args.port, args.megabytes))
        return
    if args.role == "asci":
        asci_main(args.port, args.upstream, args.token_file)
        return

    import tempfile
    me = [sys.executable, __file__]
    up_port, ws_port, asci_port = free_port(), free_port(), free_port()
    token_file = Path(tempfile.mkdtemp()) / "tokens"
    children = {
        "upstream": subprocess.Popen(me + ["--role", "upstream", "--port", str(up_port), "--megabytes", str(args.megabytes)]),
        "websockify": subprocess.Popen(["websockify", f"127.0.0.1:{ws_port}", f"127.0.0.1:{up_port}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "asci": subprocess.Popen(me + ["--role", "asci", "--port", str(asci_port), "--upstream", str(up_port),
                                       "--token-file", str(token_file)]),
    }
    try:
        for port in (up_port, ws_port, asci_port):
            wait_port(port)
        cookie, *tokens = token_file.read_text().split("\n")
        asci_url = f"ws://127.0.0.1:{asci_port}/web/proxy/{SESSION}"
        asci_headers = {"Cookie": f"asci_session={cookie}", "Origin": f"http://127.0.0.1:{asci_port}"}

        def run(name: str, mode: bytes):
            if name == "direct":
                coro = direct(up_port, mode, args.pings, args.megabytes)
            elif name == "websockify":
                coro = over_websocket(f"ws://127.0.0.1:{ws_port}/", {}, ("binary",), mode, args.pings,
                                      args.megabytes, asci=False)
            else:
                coro = over_websocket(asci_url, asci_headers, (f"asci-token.{tokens.pop()}",), mode, args.pings,
                                      args.megabytes, asci=True)
            return asyncio.run(coro)

        relay_pids = {"websockify": children["websockify"].pid, "asci": children["asci"].pid}
        rates: dict[str, list[float]] = {name: [] for name in PATHS}
        cpu_per_gb: dict[str, list[float]] = {name: [] for name in relay_pids}
        sizes: dict[str, list[float]] = {name: [] for name in relay_pids}
        times: dict[str, list[float]] = {name: [] for name in PATHS}
        client_per_gb: dict[str, list[float]] = {name: [] for name in PATHS}
        for round_ in range(args.rounds):
            order = PATHS[round_ % 3:] + PATHS[:round_ % 3]
            for name in order:
                pid = relay_pids.get(name)
                before = cpu_seconds(pid, children=True) if pid else 0.0
                client_cpu = time.process_time()
                mbps, _ = run(name, b"B")
                client_per_gb[name].append((time.process_time() - client_cpu) / (args.megabytes / 1024))
                rates[name].append(mbps)
                if pid:
                    # websockify's forked child is reaped (its CPU counted in the parent) shortly after the stream ends
                    wait_reaped = time.monotonic() + 5
                    while name == "websockify" and _children_alive(pid) and time.monotonic() < wait_reaped:
                        time.sleep(0.02)
                    cpu_per_gb[name].append((cpu_seconds(pid, children=True) - before) / (args.megabytes / 1024))
                    sizes[name].append(MESSAGE_SIZES[-1])
                _, pings = run(name, b"E")
                times[name].extend(pings)
            print(f"round {round_ + 1}: " + ", ".join(f"{n} {rates[n][-1]:.0f} MB/s" for n in PATHS), flush=True)

        print(f"\n{args.megabytes} MB stream x {args.rounds} rounds, {args.pings} one-byte round trips per round "
              f"(medians over rounds)")
        print("| path | MB/s (median) | MB/s (min–max) | relay CPU s/GB | client CPU s/GB | mean message KiB | RTT p50 ms | RTT p99 ms |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in PATHS:
            pooled = sorted(times[name])
            p50 = statistics.median(pooled) * 1e3
            p99 = pooled[int(len(pooled) * 0.99) - 1] * 1e3
            cpu = f"{statistics.median(cpu_per_gb[name]):.2f}" if name in cpu_per_gb else "–"
            size = f"{statistics.median(sizes[name]) / 1024:.0f}" if name in sizes else "–"
            print(f"| {name} | {statistics.median(rates[name]):.0f} | {min(rates[name]):.0f}–{max(rates[name]):.0f} "
                  f"| {cpu} | {statistics.median(client_per_gb[name]):.2f} | {size} | {p50:.3f} | {p99:.3f} |")

        if args.viewers <= 0:
            return
        # Concurrent viewers: each streams the upstream's whole payload at once through ASCI.
        asci_pid = children["asci"].pid
        rss0, cpu0 = status_kib(asci_pid, "VmRSS"), cpu_seconds(asci_pid)

        async def many() -> tuple[float, float]:
            start = time.perf_counter()
            rates = await asyncio.gather(*(over_websocket(asci_url, asci_headers, (f"asci-token.{tokens.pop()}",),
                                                          b"B", 0, args.megabytes, asci=True)
                                           for _ in range(args.viewers)))
            return sum(r for r, _ in rates), time.perf_counter() - start

        _, elapsed = asyncio.run(many())
        total = args.viewers * args.megabytes * 1024 * 1024 / 1e6
        print(f"\n{args.viewers} concurrent viewers through ASCI, {args.megabytes} MB each: "
              f"{total / elapsed:.0f} MB/s aggregate over {elapsed:.1f} s; asci serve CPU "
              f"{cpu_seconds(asci_pid) - cpu0:.1f} s; RSS {rss0 // 1024} MiB before, "
              f"peak {status_kib(asci_pid, 'VmHWM') // 1024} MiB")
    finally:
        for child in children.values():
            child.terminate()
            child.wait(timeout=10)


if __name__ == "__main__":
    main()
