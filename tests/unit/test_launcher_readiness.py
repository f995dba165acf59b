"""A session's VNC port counts as answering only when a VNC server greets: a listener that accepts and
says nothing (the engine's userland proxy in front of a published port) is not one."""
from __future__ import annotations

import socket
import threading
from dataclasses import replace

from asci_core.launcher.readiness import one_line, port_answers


def serve_once(greeting: bytes) -> tuple[int, threading.Thread]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def run() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                if greeting:
                    conn.sendall(greeting)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread


def test_a_vnc_greeting_answers():
    port, thread = serve_once(b"RFB 003.008\n")
    assert port_answers("127.0.0.1", port)
    thread.join(timeout=5)


def test_a_listener_that_closes_without_a_greeting_does_not_answer():
    port, thread = serve_once(b"")
    assert not port_answers("127.0.0.1", port)
    thread.join(timeout=5)


def test_nothing_listening_or_no_address_does_not_answer():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    assert not port_answers("127.0.0.1", port)
    assert not port_answers("", 5901)


def test_a_reason_is_one_printable_line_of_bounded_length():
    assert one_line("exited with code 1: a\nb\x1b[31m") == "exited with code 1: a b [31m"
    assert len(one_line("x" * 1000)) == 300


def test_which_environments_wait_for_their_vnc_server():
    from asci_core.launcher.settings import EnvironmentSettings
    env = EnvironmentSettings(name="d", image="r/d:1")
    assert [e.waits_for_vnc for e in (env, replace(env, account="image"), replace(env, ready_check="vnc"),
                                      replace(env, account="image", ready_check="running"))] == [
        False, True, True, False]
