from __future__ import annotations

import sys
import time

from asci_core.stack.process import ProcessIdentity, spawn, tail, terminate


def test_spawned_process_is_recognised_and_terminated(tmp_path):
    log = tmp_path / "p.log"
    proc, ident = spawn([sys.executable, "-c", "print('hello', flush=True); import time; time.sleep(60)"], log)
    assert ident.alive()
    for _ in range(50):
        if tail(log, 1) == "hello":
            break
        time.sleep(0.1)
    assert tail(log, 1) == "hello"
    assert terminate(ident, timeout=5) == "stopped"
    assert not ident.alive()
    assert proc.poll() is not None


def test_a_reused_pid_is_not_ours(tmp_path):
    proc, ident = spawn(["sleep", "60"], tmp_path / "s.log")
    impostor = ProcessIdentity(ident.pid, ident.start_ticks + 1)
    assert not impostor.alive()
    assert terminate(impostor) == "already gone"
    assert ident.alive(), "a mismatched record must never signal the real process"
    terminate(ident, timeout=5)


def test_a_process_ignoring_sigterm_is_killed(tmp_path):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    _, ident = spawn([sys.executable, "-c", code], tmp_path / "i.log")
    for _ in range(50):
        if tail(tmp_path / "i.log", 1) == "ready":
            break
        time.sleep(0.1)
    assert terminate(ident, timeout=0.5) == "killed after timeout"
    assert not ident.alive()


def test_tail_gives_last_lines(tmp_path):
    path = tmp_path / "t.log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(path, 3) == "line 97\nline 98\nline 99"
    assert tail(tmp_path / "missing") == "(no log)"
