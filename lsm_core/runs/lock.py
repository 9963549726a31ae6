"""One writer per run folder: an exclusive lock file that names its owner and carries a heartbeat.

A run (a script, a sweep worker, `kernel-quality`) holds `ver_<VERSION>/run.lock` for its whole life.
The lock works between the processes of one machine and between machines that share the output root
over a network file system, so it relies on neither `flock` nor `fcntl` (both unreliable over NFS):

* **Taking it.** The owner's record (host, PID, the PID's start time, the machine's boot id, start
  time, a random token, the command) is written completely into a uniquely named file, which is then
  hard-linked to `run.lock`.  `link(2)` fails if the name exists, atomically, also over NFS (where a
  lost reply is detected by the link count of the unique file).  File systems without hard links fall
  back to an exclusive create (`O_CREAT | O_EXCL`).
* **Heartbeat.** A daemon thread touches the lock file (its modification time) every
  `HEARTBEAT_S` seconds, after checking that the file is still its own.
* **A dead owner.** On the same machine (same host name and boot id) a lock whose PID is gone, or
  belongs to a newer process, is taken over at once.  A lock from another machine is taken over once
  its heartbeat is older than `STALE_AFTER_S` seconds (so the machines' clocks must agree to well
  within that, as NTP ensures).  Breaking a dead lock is serialised through a second, short-lived
  lock file (`run.lock.break`), so two processes can never both break and take it.
* **Losing it.** If the lock is taken over while its owner still runs (a machine that stalled for
  longer than the timeout), the owner notices at its next write (`RunLock.check`, wired into the run
  folder) and stops with a clear message instead of writing beside the new owner.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lsm_core.config import LOCKS
from lsm_core.errors import UserError

LOCK_NAME = "run.lock"
DAMAGED_HOST = "<damaged lock>"         # the owner of a lock file that cannot be read
BREAK_SUFFIX = ".break"
HEARTBEAT_S = LOCKS.heartbeat_s
STALE_AFTER_S = LOCKS.stale_after_s
BREAK_STALE_S = LOCKS.break_stale_s
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}


class LockHeld(UserError):
    """The run folder is locked by a live process."""


class LockLost(UserError):
    """This process's lock was taken over (or removed) by another process."""


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _pid_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()       # the command name may hold spaces and ')'
    return fields[19] if len(fields) > 19 else None   # field 22 of proc(5), counted from field 3


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:            # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock: read from the lock file; `heartbeat` is the file's modification time."""

    host: str
    pid: int
    token: str
    started: str = ""
    boot_id: str | None = None
    pid_start: str | None = None
    command: str = ""
    heartbeat: float = 0.0

    @classmethod
    def current(cls, token: str) -> "LockOwner":
        pid = os.getpid()
        program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        if program == "__main__.py":                 # python -m lsm_core ...
            program = f"python -m {Path(sys.argv[0]).parent.name}"
        command = " ".join([program, *sys.argv[1:]])
        return cls(host=socket.gethostname(), pid=pid, token=token, started=time.strftime("%Y-%m-%d %H:%M:%S"),
                   boot_id=_boot_id(), pid_start=_pid_start(pid), command=command[:500])

    def record(self) -> bytes:
        fields = {k: v for k, v in self.__dict__.items() if k != "heartbeat"}
        return (json.dumps(fields, indent=1) + "\n").encode("utf-8")

    @property
    def same_machine(self) -> bool:
        """True when the owner ran on this machine since its last boot (host name and boot id agree)."""
        return self.host == socket.gethostname() and self.boot_id is not None and self.boot_id == _boot_id()

    def state(self, stale_after: float = STALE_AFTER_S, now: float | None = None) -> str:
        """"alive", or "dead" (same machine, process gone) or "stale" (other machine, no heartbeat)."""
        if self.same_machine:
            if not _pid_exists(self.pid):
                return "dead"
            start = _pid_start(self.pid)
            return "dead" if self.pid_start and start and start != self.pid_start else "alive"
        age = (time.time() if now is None else now) - self.heartbeat
        return "stale" if age > stale_after else "alive"

    def describe(self) -> str:
        """"host node7, PID 1234, since 2026-12-01 10:00:00"."""
        return f"host {self.host}, PID {self.pid}" + (f", since {self.started}" if self.started else "")


def read_owner(lock_path) -> LockOwner | None:
    """The owner recorded in a lock file, or None when there is no lock (or it vanished meanwhile).

    A lock file that cannot be parsed (damaged, or from a foreign tool) reads as an owner on an unknown
    host, so that it counts as alive until its modification time is older than the stale timeout.
    """
    path = Path(lock_path)
    try:
        heartbeat = path.stat().st_mtime
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return LockOwner(host="<unreadable lock>", pid=0, token="", heartbeat=time.time())
    try:
        data = json.loads(text)
        return LockOwner(host=str(data["host"]), pid=int(data["pid"]), token=str(data["token"]),
                         started=str(data.get("started", "")), boot_id=data.get("boot_id"),
                         pid_start=data.get("pid_start"), command=str(data.get("command", "")),
                         heartbeat=heartbeat)
    except (ValueError, KeyError, TypeError):
        return LockOwner(host=DAMAGED_HOST, pid=0, token="", heartbeat=heartbeat)


def folder_owner(folder, stale_after: float = STALE_AFTER_S) -> LockOwner | None:
    """The live owner of a run folder's lock, or None when it is free or its owner is dead."""
    owner = read_owner(Path(folder) / LOCK_NAME)
    return owner if owner is not None and owner.state(stale_after) == "alive" else None


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Create `path` holding `data` if it does not exist: True if this call created it."""
    unique = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    with open(unique, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        try:
            os.link(unique, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            try:        # NFS: the link may have happened although its reply was lost
                if os.stat(unique).st_nlink == 2:
                    return True
            except OSError:
                pass
            if exc.errno not in _NO_HARD_LINKS:
                raise
        try:            # a file system without hard links: exclusive create
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return True
    finally:
        try:
            os.unlink(unique)
        except OSError:
            pass


class RunLock:
    """The lock of one run folder (created if missing).  Use as a context manager or acquire/release.

    `stale_after` (s): heartbeat age after which another machine's lock counts as dead;
    `heartbeat_s` (s): how often the owner touches the lock (0: no heartbeat thread, for tests).
    """

    def __init__(self, folder, stale_after: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.stale_after = float(stale_after)
        self.heartbeat_s = float(heartbeat_s)
        self.owner: LockOwner | None = None
        self.taken_over: LockOwner | None = None      # the dead owner replaced by `acquire`, if any
        self._created: list = []                     # folders this lock created, innermost first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None

    # -- taking and giving back ------------------------------------------------------------------
    def try_acquire(self) -> LockOwner | None:
        """Take the lock if it is free or its owner is dead; returns None on success, else the live owner."""
        me = LockOwner.current(secrets.token_hex(16))
        for _ in range(5):                           # a few rounds: the lock may vanish between two looks
            if self._create(me):
                self._own(me)
                return None
            holder = read_owner(self.path)
            if holder is None:
                continue
            if holder.state(self.stale_after) == "alive":
                return holder
            if self._break(holder):
                self.taken_over = holder
        holder = read_owner(self.path)
        return holder or LockOwner(host="<another process>", pid=0, token="")

    def _create(self, me: LockOwner) -> bool:
        """Create the folder if needed and try to create the lock file; an unwritable place is a UserError."""
        try:
            if not self.folder.exists():
                missing = [self.folder] + [p for p in self.folder.parents if not p.exists()]
                self.folder.mkdir(parents=True, exist_ok=True)
                self._created = missing              # innermost first: removed again if left empty
            return _create_exclusive(self.path, me.record())
        except OSError as exc:
            raise UserError(f"cannot write to the run folder {self.folder} ({exc.strerror or exc}). Choose a "
                            f"writable place with --output-root, or fix the folder's permissions.") from None

    def acquire(self) -> "RunLock":
        """Take the lock or raise LockHeld (a UserError: exit status 2) naming the holder."""
        holder = self.try_acquire()
        if holder is not None and holder.host == DAMAGED_HOST:
            raise LockHeld(
                f"the lock file {self.path} is damaged: its owner cannot be read, so it counts as held until "
                f"{self.stale_after:.0f} s after its last change (its owner's heartbeat). If no process is using "
                f"this run, delete {self.path} and re-run the same command; otherwise wait.")
        if holder is not None:
            raise LockHeld(
                f"{self.folder} is in use by another run ({holder.describe()}"
                + (f", command: {holder.command}" if holder.command else "") + "). Only one process may write a "
                f"run folder: wait for that run to finish, or choose another VERSION. A lock whose process has "
                f"died is taken over automatically: at once on the same machine, after {self.stale_after:.0f} s "
                f"without a heartbeat from another machine.")
        return self

    def release(self) -> None:
        """Give the lock back (only if it is still ours); remove the folders this lock created if left empty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.owner is not None:
            holder = read_owner(self.path)
            if holder is not None and holder.token == self.owner.token:
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
            self.owner = None
        for folder in self._created:
            try:
                folder.rmdir()                      # only succeeds when nothing was written
            except OSError:
                break
        self._created = []

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self.owner is not None

    # -- while holding it --------------------------------------------------------------------------
    def check(self) -> None:
        """Raise LockLost if the lock is no longer this process's (called before every run-folder write)."""
        if self.owner is None:
            return
        if self._lost is None:
            holder = read_owner(self.path)
            if holder is None:
                self._lost = "its lock file was removed"
            elif holder.token != self.owner.token:
                self._lost = f"the lock was taken over by {holder.describe()}"
        if self._lost is not None:
            raise LockLost(f"{self.folder}: {self._lost}, so this process stops writing there (two writers would "
                           f"damage the run). This happens when a process stalls for longer than "
                           f"{self.stale_after:.0f} s; the new owner goes on with the run.")

    def _own(self, me: LockOwner) -> None:
        self.owner = me
        self._lost = None
        self._stop.clear()
        if self.heartbeat_s > 0:
            self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.folder.name}", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            owner = self.owner
            if owner is None:
                return
            holder = read_owner(self.path)
            if holder is None or holder.token != owner.token:
                self._lost = ("its lock file was removed" if holder is None
                              else f"the lock was taken over by {holder.describe()}")
                return
            try:
                os.utime(self.path)
            except OSError:
                pass                                  # a passing NFS error; the next beat tries again

    # -- breaking a dead owner's lock ------------------------------------------------------------
    def _break(self, dead: LockOwner) -> bool:
        """Remove the lock of `dead` if it still holds it; serialised by a short-lived break lock."""
        mutex = self.path.with_name(self.path.name + BREAK_SUFFIX)
        try:
            if time.time() - mutex.stat().st_mtime > BREAK_STALE_S:
                mutex.unlink()                       # left by a breaker that crashed
        except OSError:
            pass
        if not _create_exclusive(mutex, b"breaking\n"):
            time.sleep(0.05)                          # someone else is breaking it; look again
            return False
        try:
            holder = read_owner(self.path)
            if holder is not None and holder.token == dead.token and holder.state(self.stale_after) != "alive":
                self.path.unlink()
                return True
            return False
        finally:
            try:
                mutex.unlink()
            except OSError:
                pass
