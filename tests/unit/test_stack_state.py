from __future__ import annotations

import subprocess

from asci_core.config import parse_config
from asci_core.stack.manager import StackManager
from asci_core.stack.part import Started
from asci_core.stack.process import ProcessIdentity
from asci_core.stack.state import StackState


def test_up_tidies_after_a_process_that_died_without_down(tmp_path):
    config = parse_config(f"stack:\n  state_dir: {tmp_path / 'state'}\n")
    proc = subprocess.Popen(["true"])
    ident = ProcessIdentity.of(proc.pid) or ProcessIdentity(proc.pid, 0)
    proc.wait()
    leftover = tmp_path / "drop-in.conf"
    leftover.write_text("x")
    state = StackState(config.stack.state_dir)
    state.save({"journald": Started(kind="process", pid=ident.pid, start_ticks=ident.start_ticks,
                                    files=[str(leftover)]),
                "base_image": Started(kind="artifact", artifacts=["debian:bookworm"])})
    StackManager(config, parts=[]).up()
    assert not leftover.exists()
    assert set(state.load()) == {"base_image"}  # built artifacts stay on record


def test_a_torn_state_file_does_not_block_down(tmp_path):
    config = parse_config(f"stack:\n  state_dir: {tmp_path}\n")
    (tmp_path / "stack.json").write_text('{"parts": {"regis')
    assert StackManager(config, parts=[]).down().parts == []
