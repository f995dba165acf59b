"""The lock that lets one container-event follower per engine log the exits: real flocks on a real folder."""
from __future__ import annotations

from asci_core.launcher.leader_lock import LeaderLock, lock_name

ENGINE = "4SDC:GHUD:KGTX:4I6H:45FC:LQG5:XNV3:OZ3T:CIYO:5HGL:Y76N:OB4S"


def test_one_holder_at_a_time_and_the_next_reads_where_it_stopped(tmp_path):
    first, second = LeaderLock(tmp_path / "run"), LeaderLock(tmp_path / "run")
    first.bind(ENGINE)
    second.bind(ENGINE)
    assert first.try_take() and first.try_take()  # holding it is no reason to refuse
    assert not second.try_take() and not second.held
    assert second.position() is None  # nobody recorded anything yet
    first.record(1796194413669244524)
    first.record(99)  # a shorter number leaves nothing of the longer one behind
    second.record(5)  # not held: ignored
    assert second.position() == 99
    first.release()
    assert second.try_take() and second.position() == 99
    other = LeaderLock(tmp_path / "run")
    other.bind("another-engine")
    assert other.try_take()  # each engine has a lock of its own
    second.release()
    other.release()


def test_the_lock_file_is_named_after_the_engine_and_nothing_else(tmp_path):
    assert lock_name(ENGINE) == "container-events-4SDC-GHUD-KGTX-4I6H-45FC-LQG5-XNV3-OZ3T-CIYO-5HGL-Y76N-OB4S.lock"
    assert lock_name("../../etc/passwd") == "container-events-etc-passwd.lock"
    assert lock_name("::") == "container-events-unknown.lock"
    lock = LeaderLock(tmp_path)
    lock.bind("../x")
    assert lock.path == tmp_path / "container-events-x.lock" and (lock.path.stat().st_mode & 0o777) == 0o600
    (tmp_path / "container-events-x.lock").write_text("garbage\n")
    assert lock.position() is None  # a damaged record means: start from now
    lock.release()
