"""The run-folder lock: one owner at a time, across processes and machines; dead owners are taken over."""
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import pytest

from lsm_core.errors import UserError
from lsm_core.runs.lock import LOCK_NAME, LockHeld, LockLost, LockOwner, RunLock, folder_owner, read_owner


def _fake_lock(folder, host, pid, age_s=0.0, boot_id=None, token="feedface"):
    """A lock file as another process (or machine) leaves it, with a heartbeat `age_s` seconds old."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"host": host, "pid": pid, "token": token, "started": "2026-01-01 00:00:00",
                                "boot_id": boot_id, "pid_start": None, "command": "a run"}))
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_lock_is_exclusive_names_its_holder_and_is_given_back(tmp_path):
    folder = tmp_path / "ver_1"
    with RunLock(folder, heartbeat_s=0) as first:
        assert first.held and (folder / LOCK_NAME).exists()
        owner = read_owner(folder / LOCK_NAME)
        assert (owner.host, owner.pid) == (socket.gethostname(), os.getpid())
        with pytest.raises(LockHeld, match=f"PID {os.getpid()}") as refused:
            RunLock(folder).acquire()
        assert isinstance(refused.value, UserError)          # exit status 2 through the command layer
        assert "choose another VERSION" in str(refused.value)
        assert folder_owner(folder).pid == os.getpid()
    assert not (folder / LOCK_NAME).exists()
    assert not folder.exists()                               # created by the lock, left empty: removed again
    assert folder_owner(folder) is None


def test_a_folder_with_files_is_kept_when_the_lock_is_given_back(tmp_path):
    folder = tmp_path / "ver_2"
    with RunLock(folder, heartbeat_s=0):
        (folder / "params.json").write_text("{}")
    assert folder.exists() and not (folder / LOCK_NAME).exists()


def test_dead_owner_on_this_machine_is_taken_over_at_once(tmp_path):
    folder = tmp_path / "ver_3"
    me = LockOwner.current("x")
    _fake_lock(folder, me.host, _dead_pid(), boot_id=me.boot_id)
    if me.boot_id is None:
        pytest.skip("no boot id on this system: same-machine detection falls back to the heartbeat")
    lock = RunLock(folder, heartbeat_s=0).acquire()
    assert lock.taken_over is not None and lock.taken_over.token == "feedface"
    assert read_owner(folder / LOCK_NAME).pid == os.getpid()
    lock.release()


def test_live_owner_on_this_machine_is_never_taken_over_however_old_its_heartbeat(tmp_path):
    folder = tmp_path / "ver_4"
    me = LockOwner.current("x")
    if me.boot_id is None:
        pytest.skip("no boot id on this system")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _fake_lock(folder, me.host, sleeper.pid, age_s=10_000, boot_id=me.boot_id)
        with pytest.raises(LockHeld, match=str(sleeper.pid)):
            RunLock(folder, stale_after=1).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_other_machine_is_alive_until_its_heartbeat_is_older_than_the_timeout(tmp_path):
    folder = tmp_path / "ver_5"
    _fake_lock(folder, "node-elsewhere", 4242, age_s=100)
    with pytest.raises(LockHeld, match="node-elsewhere, PID 4242"):
        RunLock(folder, stale_after=300).acquire()
    assert folder_owner(folder, stale_after=300).host == "node-elsewhere"
    assert folder_owner(folder, stale_after=50) is None
    lock = RunLock(folder, stale_after=50, heartbeat_s=0).acquire()
    assert lock.taken_over.host == "node-elsewhere"
    lock.release()


def test_same_host_name_on_another_boot_counts_as_another_machine(tmp_path):
    """Containers on different machines may share a host name: only the heartbeat decides then."""
    folder = tmp_path / "ver_6"
    _fake_lock(folder, socket.gethostname(), _dead_pid(), age_s=5, boot_id="another-boot")
    with pytest.raises(LockHeld):
        RunLock(folder, stale_after=300).acquire()


def test_damaged_lock_file_counts_as_alive_until_stale(tmp_path):
    folder = tmp_path / "ver_7"
    folder.mkdir()
    (folder / LOCK_NAME).write_text("\x00\x01 not json")
    with pytest.raises(LockHeld, match="lock file .*run.lock is damaged") as held:
        RunLock(folder, stale_after=300).acquire()
    assert "If no process is using this run, delete" in " ".join(str(held.value).split())
    old = time.time() - 1000
    os.utime(folder / LOCK_NAME, (old, old))
    RunLock(folder, stale_after=300, heartbeat_s=0).acquire().release()


def test_heartbeat_touches_the_lock(tmp_path):
    folder = tmp_path / "ver_8"
    with RunLock(folder, heartbeat_s=0.05):
        old = time.time() - 1000
        os.utime(folder / LOCK_NAME, (old, old))
        time.sleep(0.5)
        assert time.time() - (folder / LOCK_NAME).stat().st_mtime < 5


def test_a_lost_lock_stops_the_next_write(tmp_path):
    folder = tmp_path / "ver_9"
    lock = RunLock(folder, heartbeat_s=0).acquire()
    lock.check()
    _fake_lock(folder, "node-new-owner", 7, token="other")          # taken over while we stalled
    with pytest.raises(LockLost, match="node-new-owner"):
        lock.check()
    lock.release()
    assert read_owner(folder / LOCK_NAME).host == "node-new-owner"   # the new owner's lock is left alone
    lock2 = RunLock(tmp_path / "ver_10", heartbeat_s=0).acquire()
    (tmp_path / "ver_10" / LOCK_NAME).unlink()
    with pytest.raises(LockLost, match="removed"):
        lock2.check()
    lock2.release()


def _race(folder, stale_after, start_at, queue, tried):
    while time.time() < start_at:
        pass
    lock = RunLock(folder, stale_after=stale_after, heartbeat_s=0)
    holder = lock.try_acquire()
    queue.put(holder is None)
    tried.wait(timeout=120)                 # the owner holds the lock until every process has tried,
    if holder is None:                      # however slowly a loaded machine schedules them
        lock.release()


@pytest.mark.parametrize("stale", [False, True])
def test_processes_racing_for_a_free_or_dead_lock_get_exactly_one_owner(tmp_path, stale):
    context = multiprocessing.get_context("fork")
    for attempt in range(3):
        folder = tmp_path / f"ver_{attempt}"
        if stale:
            _fake_lock(folder, "node-dead", 1, age_s=1000)
        queue = context.Queue()
        start_at = time.time() + 0.5
        tried = context.Barrier(6)
        workers = [context.Process(target=_race, args=(folder, 60, start_at, queue, tried)) for _ in range(6)]
        for worker in workers:
            worker.start()
        results = [queue.get(timeout=30) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
        assert sum(results) == 1, results
