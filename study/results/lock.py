"""One driver per study: `<study>/driver.lock`, taken before Ray starts, held for the whole run
and removed when the driver ends.

Two drivers of one study write the same tables: two `--name same` started together both passed
the "already exists" check and one run's trials vanished; `--resume` of a running study errored
every trial. The lock names its holder (host, pid, start time, command) and carries a random
token, so a driver only ever removes the lock it wrote.

- A local folder: the lock is created with O_CREAT|O_EXCL, the one atomic decision of who runs
  the study. Its holder is alive while its pid is (`os.kill(pid, 0)`) and that process started
  before the lock (a reused pid is not the holder). A lock of a dead pid on this host is taken
  over, with a message; one of another host cannot be checked from here and is refused, with how
  to remove it.
- An object store (s3://, gs://): pyarrow has no create-if-absent, so the lock is a lease: written
  when absent or expired, read back after SETTLE_S and kept only if it still holds our token (of
  two drivers writing at once the last write wins, and both see which). A driver whose check and
  write are more than SETTLE_S apart can still overwrite a lease written in between, so the race
  is narrowed, not closed. A thread renews the lease every LEASE_S / 4 while the driver runs; a
  lease not renewed for LEASE_S (the driver was killed, or its host lost the network) expires
  and may be taken over, with a message.

Ray-free and torch-free: the study folder is results/' domain.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from study import storage as st
from study.results.schema import DRIVER_LOCK as LOCK

LEASE_S = 600.0  # object stores: how long a lease lasts without renewal
SETTLE_S = 2.0  # object stores: wait between writing a lease and reading it back
# a holder's process may start this long after its lock on the wall clock and still be its
# holder: /proc's start times move with clock steps; a larger slack only misses pid reuse sooner
CLOCK_SLACK_S = 60.0
HOST = socket.gethostname()


class LockHeld(ValueError):
    """Another driver holds the study: the message names it and says what to do."""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _date(value: object) -> str:
    """An ISO date read from a lock, checked now (a ValueError here, not when it is compared)."""
    epoch(str(value))
    return str(value)


@dataclass(frozen=True)
class Holder:
    """What driver.lock records."""

    host: str
    pid: int
    started: str  # ISO 8601, UTC
    command: str
    token: str
    expires: str | None = None  # leases (object stores) only

    def who(self) -> str:
        return f"pid {self.pid} on host {self.host} since {self.started}"


def lock_path(study_dir: str) -> str:
    return st.join(study_dir, LOCK)


def read_holder(study_dir: str) -> Holder | None:
    """The lock's holder; None when there is no lock. A lock that does not parse (a driver is
    writing it this instant, or someone edited it) is refused, never guessed at."""
    path = lock_path(study_dir)
    try:
        text = st.read_text(path)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        if int(data["pid"]) < 1:  # os.kill(0 or -n) would signal a whole process group
            raise ValueError(f"pid {data['pid']}")
        return Holder(
            host=str(data["host"]),
            pid=int(data["pid"]),
            started=_date(data["started"]),
            command=str(data["command"]),
            token=str(data["token"]),
            expires=_date(data["expires"]) if st.is_remote(path) else None,  # leases have one
        )
    except (ValueError, KeyError, TypeError) as e:
        raise LockHeld(
            f"{st.redact(path)}: unreadable driver lock ({type(e).__name__}: {e}); a driver may "
            f"be writing it now: if none runs for this study, remove it and run again"
        ) from e


def process_start(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), from /proc; None where that is unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        stat = Path("/proc/stat").read_text().splitlines()
        boot = next(int(line.split()[1]) for line in stat if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def alive(holder: Holder) -> bool:
    """Whether the holder's process (on this host) still runs: its pid is alive and started
    before the lock was written (a process that started after it, such as a container restarted
    with the same pid, only reuses the number)."""
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    begun = process_start(holder.pid)
    return begun is None or begun <= epoch(holder.started) + CLOCK_SLACK_S


def stale(holder: Holder, remote: bool) -> str | None:
    """Why the holder's lock may be taken over (it has ended), or None while it may still run."""
    if remote:
        assert holder.expires is not None  # read_holder refuses a lease without one
        expired = epoch(holder.expires) < time.time()
        return f"its lease expired at {holder.expires}" if expired else None
    if holder.host == HOST and not alive(holder):
        return "which no longer runs"
    return None


def refusal(study_dir: str, holder: Holder) -> str:
    """One line: who holds the study and what to do."""
    path, command = lock_path(study_dir), holder.command[:160]
    head = f"study {study_dir} is in use by another driver, {holder.who()} ({command})"
    if st.is_remote(study_dir):
        what = (
            f"{head}, whose lease runs until {holder.expires} (renewed while it runs): let it "
            f"end; if it has ended, wait until then or delete {path}, and run again"
        )
    elif holder.host != HOST:
        what = (
            f"{head}; this host ({HOST}) cannot check that process: let it end; if it has "
            f"ended, remove its lock (rm {path}) and run again"
        )
    else:
        what = f"{head}: let it end, or stop it (kill {holder.pid}), and run again"
    return st.redact(what)


def check_free(study_dir: str) -> None:
    """Refuse (LockHeld) while another driver holds the study; a stale lock passes (`acquire`
    takes it over). Writes nothing: the early check, before the study is even opened."""
    holder = read_holder(study_dir)
    if holder is not None and stale(holder, st.is_remote(study_dir)) is None:
        raise LockHeld(refusal(study_dir, holder))


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def serialized(folder: Path) -> Iterator[None]:
    """Local acquires of one study one at a time (flock on the folder, released when its
    process dies): O_EXCL decides a fresh lock alone, but taking over a stale one is read, remove,
    create, which two drivers must not interleave. Without flock (some NFS mounts) only
    takeovers can race."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # and the flock with it


class DriverLock:
    """The lock of one study's driver: `acquire()` before Ray starts, `release()` when the driver
    ends (try/finally; atexit too, for a caller that never reaches its finally)."""

    def __init__(
        self,
        study_dir: str,
        command: str,
        *,
        lease_s: float = LEASE_S,
        settle_s: float = SETTLE_S,
        say: Callable[[str], None] = warn,
    ) -> None:
        self.study_dir, self.path = study_dir, lock_path(study_dir)
        self.remote = st.is_remote(study_dir)
        self.lease_s, self.settle_s, self.say = lease_s, settle_s, say
        self.token = uuid.uuid4().hex
        self.holder = Holder(
            host=HOST,
            pid=os.getpid(),
            started=iso(time.time()),
            command=st.redact(command),
            token=self.token,
        )
        self.held = False
        self.lost = False  # a lease another driver took over while we ran (renewals failed)
        self._made_dir = False  # a local folder this lock created, removed with it when empty
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> DriverLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()

    def acquire(self) -> DriverLock:
        """Take the lock or raise LockHeld naming its holder; a stale lock is taken over with a
        message."""
        if self.remote:
            self._acquire_lease()
        else:
            self._acquire_local()
        self.held = True
        atexit.register(self.release)
        return self

    def _taking_over(self, old: Holder, why: str) -> None:
        self.say(
            f"note: taking over the lock of study {st.redact(self.study_dir)} from "
            f"{old.who()}, {why}"
        )

    def _acquire_local(self) -> None:
        folder = st.local_path(self.study_dir)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir()
            self._made_dir = True
        except FileExistsError:
            pass
        try:
            with serialized(folder):
                self._create_local(folder / LOCK)
        except BaseException:
            self._remove_made_dir()
            raise

    def _create_local(self, path: Path) -> None:
        data = json.dumps(asdict(self.holder), indent=1).encode()
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                old = read_holder(self.study_dir)
                if old is None:  # its driver ended in between
                    continue
                why = stale(old, remote=False)
                if why is None:
                    raise LockHeld(refusal(self.study_dir, old)) from None
                path.unlink(missing_ok=True)  # a dead driver's, under `serialized`
                self._taking_over(old, why)
                continue
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:  # a full disk, Ctrl-C: no half-written lock left to refuse
                path.unlink(missing_ok=True)
                raise
            return

    def _write_lease(self) -> None:
        expires = iso(time.time() + self.lease_s)
        lease = {**asdict(self.holder), "expires": expires, "lease_s": self.lease_s}
        st.write_text(self.path, json.dumps(lease, indent=1))

    def _acquire_lease(self) -> None:
        old = read_holder(self.study_dir)
        why = None if old is None else stale(old, remote=True)
        if old is not None and why is None:
            raise LockHeld(refusal(self.study_dir, old))
        self._write_lease()
        try:
            time.sleep(self.settle_s)  # a driver that read "absent" as we did writes by now
            back = read_holder(self.study_dir)
        except BaseException:  # Ctrl-C while settling: no lease left to expire in 10 minutes
            self._remove_if_ours()
            raise
        if back is None or back.token != self.token:
            # another driver wrote after us: its lease stands (ours is gone, nothing to remove)
            if back is None:
                where = st.redact(self.study_dir)
                raise LockHeld(f"study {where}: another driver is starting it; run again")
            raise LockHeld(refusal(self.study_dir, back))
        if old is not None and why is not None:
            self._taking_over(old, why)
        self._renewer = threading.Thread(target=self._renew, name="driver-lease", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        """Every lease_s / 4: check the lease is still ours, then push its expiry on. A failed
        renewal is retried at the next turn; a lease not renewed for lease_s expires."""
        failing = False
        while not self._stop.wait(self.lease_s / 4):
            try:
                back = read_holder(self.study_dir)
                if back is None or back.token != self.token:
                    self.lost = True
                    other = "it is gone" if back is None else f"now held by {back.who()}"
                    self.say(
                        f"warning: lost the lease of study {st.redact(self.study_dir)} ({other}):"
                        " another driver may be writing the same study"
                    )
                    return
                self._write_lease()
                failing = False
            except (OSError, ValueError) as e:
                if not failing:
                    self.say(f"warning: cannot renew the lease {st.redact(self.path)} ({e})")
                failing = True

    def release(self) -> None:
        """Remove the lock if it is still ours (never another driver's); never raises, so a
        finally that calls it does not hide the error that ended the run."""
        if not self.held:
            return
        self.held = False
        atexit.unregister(self.release)
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        self._remove_if_ours()
        self._remove_made_dir()

    def _remove_if_ours(self) -> None:
        try:
            back = read_holder(self.study_dir)
            if back is not None and back.token == self.token:
                st.delete_file(self.path)
        except (OSError, ValueError) as e:
            self.say(f"warning: could not remove the lock {st.redact(self.path)} ({e})")

    def _remove_made_dir(self) -> None:
        # a run that wrote nothing leaves no folder (its name stays free both ways)
        if self._made_dir:
            try:
                st.local_path(self.study_dir).rmdir()
            except OSError:  # not empty: the study's files (or another driver's lock)
                pass
