"""Bounded waits on an event itself (never a bare sleep as synchronisation)."""
from __future__ import annotations

import socket
import subprocess
import time
from typing import Any, Callable


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """CHECK's first truthy result; AssertionError naming WHAT after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def wait_listening(process: subprocess.Popen, port: int, what: str, timeout: float,
                   on_failure: Callable[[], None]) -> None:
    """Until PROCESS accepts connections on 127.0.0.1:PORT; ON_FAILURE cleans up before the error."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            on_failure()
            raise RuntimeError(f"{what} exited: {process.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                on_failure()
                raise RuntimeError(f"{what} did not start listening") from None
            time.sleep(0.05)
