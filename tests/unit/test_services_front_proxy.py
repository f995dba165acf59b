"""asci-front, the services' TCP front, run as a process on loopback: switch, drain, hold, state, refusals.

The front listens on 127.0.0.1:PORT and forwards to BACKEND:PORT; the backends are small TCP servers
on 127.0.0.2 and 127.0.0.3 (all of 127/8 is loopback), each answering its own name.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.waiting import wait_until

PROXY = Path(__file__).resolve().parents[2] / "asci_core" / "services" / "front_proxy.py"


class Backend(threading.Thread):
    """Answers NAME on each connection; with `hold`, only once the client closes its side."""

    def __init__(self, address: str, port: int, hold: bool = False):
        super().__init__(daemon=True)
        self.sock = socket.create_server((address, port))
        self.address, self.hold = address, hold

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if self.hold:
                    conn.recv(1)  # returns b"" when the client closes
                conn.sendall(self.address.encode())

    def close(self) -> None:
        self.sock.close()


class Front:
    def __init__(self, tmp: Path, port: int, hold: float = 2.0):
        self.control, self.state, self.port, self.hold = tmp / "control.sock", tmp / "backend", port, hold
        self.process: subprocess.Popen | None = None

    def start(self) -> "Front":
        self.process = subprocess.Popen(
            [sys.executable, str(PROXY), "--control", str(self.control), "serve", "--ports", str(self.port),
             "--listen", "127.0.0.1", "--state", str(self.state), "--hold", str(self.hold)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until(lambda: self.ask("show").returncode == 0, 10, "the front's control socket")
        return self

    def stop(self) -> None:
        if self.process:
            self.process.kill()
            self.process.wait()

    def ask(self, *words: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(PROXY), "--control", str(self.control), *words],
                              capture_output=True, text=True, timeout=30)

    def answer(self, *words: str) -> str:
        out = self.ask(*words)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout.strip()[2:].strip()

    def fetch(self) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
            conn.shutdown(socket.SHUT_WR)
            return conn.recv(100)


@pytest.fixture
def setup(tmp_path):
    port = free_port()
    backends = [Backend("127.0.0.2", port), Backend("127.0.0.3", port, hold=True)]
    for b in backends:
        b.start()
    front = Front(tmp_path, port).start()
    yield front, port
    front.stop()
    for b in backends:
        b.close()


def test_switch_sends_new_connections_to_the_new_backend_and_is_kept_across_a_restart(setup, tmp_path):
    front, port = setup
    assert front.answer("switch", "127.0.0.2") == "-"
    assert front.fetch() == b"127.0.0.2"
    assert front.answer("switch", "127.0.0.3") == "127.0.0.2"
    assert front.fetch() == b"127.0.0.3"
    front.stop()
    front.start()
    assert json.loads(front.answer("show"))["backend"] == "127.0.0.3"


def test_drain_waits_for_open_connections_to_the_old_backend_and_is_bounded(setup):
    front, port = setup
    front.answer("switch", "127.0.0.3")  # the holding backend: a connection stays open until closed
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    wait_until(lambda: json.loads(front.answer("show"))["open"].get("127.0.0.3") == 1, 10, "the open connection")
    front.answer("switch", "127.0.0.2")
    assert front.fetch() == b"127.0.0.2"  # new connections go to the new backend at once
    assert front.answer("drain", "127.0.0.3", "0.3") == "1"  # bounded: still open after 0.3 s
    drained = threading.Thread(target=lambda: setattr(drained, "left", front.answer("drain", "127.0.0.3", "20")))
    drained.start()
    client.shutdown(socket.SHUT_WR)
    assert client.recv(100) == b"127.0.0.3"  # the old backend finished its answer through the front
    client.close()
    drained.join(timeout=30)
    assert drained.left == "0"


def test_a_connection_is_held_while_no_backend_answers(tmp_path, setup):
    front, port = setup
    front.answer("switch", "127.0.0.9")  # nothing listens there: a version that is stopping
    result = {}
    waiting = threading.Thread(target=lambda: result.setdefault("answer", front.fetch()))
    waiting.start()
    wait_until(lambda: json.loads(front.answer("show"))["held"] == 1, 10, "the held connection")
    front.answer("switch", "127.0.0.2")
    waiting.join(timeout=30)
    assert result["answer"] == b"127.0.0.2"


def test_switch_to_nothing_holds_new_connections_until_a_backend_is_switched_in(setup):
    front, port = setup
    front.answer("switch", "127.0.0.2")
    assert front.answer("switch", "-") == "127.0.0.2"
    result = {}
    waiting = threading.Thread(target=lambda: result.setdefault("answer", front.fetch()))
    waiting.start()
    wait_until(lambda: json.loads(front.answer("show")) == {"backend": None, "open": {}, "held": 1}, 10,
               "the held connection")
    front.answer("switch", "127.0.0.2")
    waiting.join(timeout=30)
    assert result["answer"] == b"127.0.0.2"


def test_after_the_hold_a_connection_is_closed_and_the_front_says_so(setup):
    front, port = setup
    front.answer("switch", "127.0.0.9")
    assert front.fetch() == b""  # closed without an answer after --hold seconds
    front.stop()
    assert b"no backend answered" in front.process.stdout.read()


@pytest.mark.parametrize("words", [["switch", "bad/name"], ["drain", "127.0.0.2", "soon"], ["frobnicate"]])
def test_bad_commands_are_refused_and_change_nothing(setup, words):
    front, _ = setup
    front.answer("switch", "127.0.0.2")
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(front.control))
        conn.sendall((" ".join(words) + "\n").encode())
        assert conn.makefile().readline().startswith("error ")
    assert json.loads(front.answer("show"))["backend"] == "127.0.0.2"
