"""Issue #27 (3): one driver per study. `study.results.lock` decides atomically which of two
drivers runs a study, names the holder when it refuses, takes over only a lock whose driver is
gone, and removes only the lock it wrote; on s3:// a renewed lease does the same (moto)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import boto3
import pytest
from conftest import REPO
from lock_fixture import finished_pid, write_lock
from test_storage import BUCKET, s3  # noqa: F401 (the moto S3 server, a fixture)

from study import storage as st
from study.results import lock as lk
from study.results.lock import LOCK, DriverLock, LockHeld, iso


def race(study_dir: str, n: int, **options) -> tuple[list[DriverLock], list[str]]:
    """n threads acquire the lock of one study at the same instant: (winners, refusals)."""
    start, won, refused = threading.Barrier(n), [], []

    def one() -> None:
        lock = DriverLock(study_dir, "cmd", **options)
        start.wait()
        try:
            won.append(lock.acquire())
        except LockHeld as e:
            refused.append(str(e))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, refused


def test_threads_racing_on_one_study_one_wins(tmp_path) -> None:
    sd = str(tmp_path / "s" / "x")
    won, refused = race(sd, 8)
    assert len(won) == 1 and len(refused) == 7, refused
    assert all(f"pid {os.getpid()} on host {socket.gethostname()}" in r for r in refused)
    won[0].release()
    assert not (tmp_path / "s" / "x" / LOCK).exists()


RACER = """
import sys, time
from study.results.lock import DriverLock, LockHeld
at = float(sys.argv[2])
lock = DriverLock(sys.argv[1], "racer")
time.sleep(max(0.0, at - time.time()))
try:
    lock.acquire()
except LockHeld as e:
    print("refused", e, flush=True)
else:
    print("won", flush=True)
    sys.stdin.read()  # held until the test has heard every racer
    lock.release()
"""


def test_processes_racing_on_one_study_one_wins(tmp_path) -> None:
    """Separate drivers (own pids) started at one instant: exactly one holds the study."""
    sd, at = str(tmp_path / "x"), time.time() + 3
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, sd, str(at)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    out = [p.stdout.readline().strip() for p in procs]
    for p in procs:
        p.communicate(timeout=60)
    assert sorted(o.split()[0] for o in out) == ["refused", "refused", "refused", "won"], out
    assert not (tmp_path / "x" / LOCK).exists()


def test_a_live_lock_is_refused_naming_its_holder(tmp_path) -> None:
    sd = tmp_path / "x"
    theirs = write_lock(sd)
    before = (sd / LOCK).read_text()
    with pytest.raises(LockHeld) as e:
        DriverLock(str(sd), "mine").acquire()
    msg = str(e.value)
    for words in (f"pid {os.getpid()}", socket.gethostname(), theirs["started"], "kill"):
        assert words in msg, msg
    assert "\n" not in msg and (sd / LOCK).read_text() == before
    with pytest.raises(LockHeld):
        lk.check_free(str(sd))


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path) -> None:
    sd, said = tmp_path / "x", []
    dead = finished_pid()
    write_lock(sd, pid=dead)
    lk.check_free(str(sd))  # the early check lets it pass
    lock = DriverLock(str(sd), "mine", say=said.append).acquire()
    assert len(said) == 1 and f"pid {dead}" in said[0] and "no longer runs" in said[0], said
    assert json.loads((sd / LOCK).read_text())["token"] == lock.token
    lock.release()
    assert not (sd / LOCK).exists() and sd.is_dir()  # a folder it did not make stays


def test_a_reused_pid_is_not_the_holder(tmp_path) -> None:
    """A container restarted with the same pid: the process with that pid started after the
    lock was written, so the lock's driver is gone."""
    sd, said = tmp_path / "x", []
    write_lock(sd, started="2000-01-01T00:00:00+00:00")  # our pid, long before we started
    DriverLock(str(sd), "mine", say=said.append).acquire().release()
    assert said and "taking over" in said[0]


def test_a_lock_of_another_host_is_never_taken(tmp_path) -> None:
    sd = tmp_path / "x"
    write_lock(sd, host="elsewhere", pid=finished_pid())
    before = (sd / LOCK).read_text()
    with pytest.raises(LockHeld) as e:
        DriverLock(str(sd), "mine").acquire()
    assert "host elsewhere" in str(e.value) and f"rm {sd / LOCK}" in str(e.value)
    assert (sd / LOCK).read_text() == before


@pytest.mark.parametrize("text", ["", "{not json", '{"host": "h"}', '{"pid": 0}'])
def test_an_unreadable_lock_is_refused_and_left_alone(tmp_path, text) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / LOCK).write_text(text)
    with pytest.raises(LockHeld, match="unreadable driver lock"):
        DriverLock(str(tmp_path / "x"), "mine").acquire()
    assert (tmp_path / "x" / LOCK).read_text() == text


def test_release_removes_only_its_own_lock(tmp_path) -> None:
    sd = tmp_path / "x"
    lock = DriverLock(str(sd), "mine").acquire()
    assert json.loads((sd / LOCK).read_text())["command"] == "mine"
    theirs = write_lock(sd, token="someone else's")  # e.g. replaced by hand
    lock.release()
    lock.release()  # twice is harmless
    assert json.loads((sd / LOCK).read_text()) == theirs


# --- object stores: a lease -------------------------------------------------------------------


def test_s3_lease_is_exclusive_renewed_and_removed(s3) -> None:  # noqa: F811
    sd = f"s3://{BUCKET}/locks/renewed"
    lock = DriverLock(sd, "mine", lease_s=2.0, settle_s=0.1).acquire()
    first = json.loads(st.read_text(f"{sd}/{LOCK}"))
    assert first["token"] == lock.token and first["expires"] and first["lease_s"] == 2.0
    time.sleep(3)  # past the first expiry: renewed meanwhile
    later = json.loads(st.read_text(f"{sd}/{LOCK}"))
    assert later["expires"] > first["expires"] and not lock.lost
    with pytest.raises(LockHeld) as e:
        DriverLock(sd, "second", settle_s=0.1).acquire()
    assert f"pid {os.getpid()}" in str(e.value) and "lease runs until" in str(e.value)
    lock.release()
    assert not st.exists(f"{sd}/{LOCK}")


def test_s3_expired_lease_is_taken_over_and_a_live_one_is_not(s3) -> None:  # noqa: F811
    sd, said = f"s3://{BUCKET}/locks/expired", []
    write_lock(sd, host="elsewhere", expires=iso(time.time() + 600))
    with pytest.raises(LockHeld, match="host elsewhere"):
        DriverLock(sd, "mine", settle_s=0.1).acquire()
    write_lock(sd, host="elsewhere", expires=iso(time.time() - 5))
    lock = DriverLock(sd, "mine", settle_s=0.1, say=said.append).acquire()
    assert len(said) == 1 and "lease expired" in said[0] and "host elsewhere" in said[0]
    lock.release()
    assert not st.exists(f"{sd}/{LOCK}")


def test_s3_racing_drivers_one_wins(s3) -> None:  # noqa: F811
    won, refused = race(f"s3://{BUCKET}/locks/race", 4, settle_s=1.0)
    assert len(won) == 1 and len(refused) == 3, refused
    won[0].release()


def test_s3_a_lost_lease_is_reported_and_not_removed(s3) -> None:  # noqa: F811
    sd, said = f"s3://{BUCKET}/locks/lost", []
    lock = DriverLock(sd, "mine", lease_s=0.8, settle_s=0.1, say=said.append).acquire()
    theirs = write_lock(sd, host="elsewhere", expires=iso(time.time() + 600))
    deadline = time.time() + 10
    while not lock.lost and time.time() < deadline:
        time.sleep(0.1)
    assert lock.lost and "lost the lease" in said[-1] and "host elsewhere" in said[-1]
    lock.release()
    assert json.loads(st.read_text(f"{sd}/{LOCK}")) == theirs  # theirs stays
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=f"locks/lost/{LOCK}")


def test_s3_ctrl_c_while_settling_leaves_no_lease(s3, monkeypatch) -> None:  # noqa: F811
    sd = f"s3://{BUCKET}/locks/interrupted"

    def interrupt(_: float) -> None:
        assert st.exists(f"{sd}/{LOCK}")  # written, not yet read back
        raise KeyboardInterrupt

    monkeypatch.setattr(lk.time, "sleep", interrupt)
    with pytest.raises(KeyboardInterrupt):
        DriverLock(sd, "mine").acquire()
    assert not st.exists(f"{sd}/{LOCK}")
