"""One process for the stack to start and stop: the token service plus `docker-registry serve`.

Run as `python -m registry.supervisor ...` by RegistryPart. The registry is our
child and dies with us (PR_SET_PDEATHSIG), and we exit when it exits, so the
stack's single pid record always means "registry and its token service".
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

from asci_core import jsonlog
from registry import token_service
from registry.log_hygiene import guard_handlers, restrict_log_file

log = jsonlog.get_logger("registry")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="registry.supervisor")
    p.add_argument("--directory", type=Path, required=True, help="STATE_DIR/registry")
    p.add_argument("--registry-binary", required=True)
    p.add_argument("--registry-config", type=Path, required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--token-port", type=int, required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--ttl", type=int, default=300)
    p.add_argument("--tls-certificate", type=Path)
    p.add_argument("--tls-key", type=Path)
    return p


async def run(args: argparse.Namespace) -> int:
    app = token_service.build(args.directory, args.issuer, args.service, args.ttl)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = None
    if args.tls_certificate:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_certificate, args.tls_key)
    site = web.TCPSite(runner, args.host, args.token_port, ssl_context=context)
    try:
        await site.start()
    except OSError as exc:
        log.error("token service cannot listen", host=args.host, port=args.token_port, error=str(exc))
        await runner.cleanup()
        return 1
    log.info("token service listening", host=args.host, port=args.token_port)
    proc = await asyncio.create_subprocess_exec(args.registry_binary, "serve", str(args.registry_config),
                                                stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exited = asyncio.ensure_future(proc.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if exited.done():
        code = proc.returncode or 1
        log.error("registry exited", exit_code=proc.returncode)
        stopping.cancel()
    else:
        proc.terminate()
        try:
            await asyncio.wait_for(exited, 15)
        except asyncio.TimeoutError:
            proc.kill()
            await exited
    await runner.cleanup()
    return code


def main(argv: list[str] | None = None) -> int:
    # Before the first line: this log names users and addresses, so it is not for everyone.
    restrict_log_file(1)
    jsonlog.configure("info")
    guard_handlers()
    return asyncio.run(run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
