"""Where the test suite's CPU goes, test by test: the pytest process's own CPU while the test ran
(a plugin in this file) plus every process the test started, however deep (Ray's heads and trial
workers, study drivers, browsers), from Linux process accounting.

The README's test command is CPU-bound (its two cores are ~95 % busy, test_suite.txt), so its wall
time is about its CPU-seconds / 1.9: this says which tests those seconds are, and how many of
them are processes that start and import torch (the floor under each real study,
study_startup.py). A process is charged to the test that was running on its pytest worker in the
second it began (accounting keeps whole seconds): a Ray head started by a session fixture is
charged to the first test that used it, and its trial workers to the tests that were running.
Processes whose ancestry does not reach a pytest worker (daemons that detached from it, anything
else on the machine) are summed as "not attributed".

Needs the kernel's BSD process accounting: root, and `accton` (Debian/Ubuntu: apt-get install
acct). The accounting file is a temporary one, switched off when pytest ends, however it ends.

    python benchmarks/suite_cpu.py [--top 40] [-- PYTEST_ARGS]   # default: -q -n 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOG_ENV = "STUDY_SUITE_CPU_LOG"  # set by main(): where the plugin appends one line per test

# struct acct_v3 (linux/acct.h): flag, version, tty, exitcode, uid, gid, pid, ppid, btime (s),
# etime (float, ticks), utime, stime, mem, io, rw, minflt, majflt, swaps (comp_t), comm[16]
ACCT_V3 = struct.Struct("<BBHIIIIIIf8H16s")
AHZ = 100  # the ticks of acct_v3's comp_t times


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int  # epoch seconds (whole: what accounting records)
    cpu_s: float  # user + system, all its threads
    comm: str  # its last thread's name, 15 characters: Ray's trial workers read "ray::ImplicitFu"


@dataclass(frozen=True)
class TestRun:
    pid: int  # the pytest (worker) process that ran it
    nodeid: str
    start: float
    end: float
    cpu_s: float  # that process's own CPU during it, fixtures' setup and teardown included


def comp_t(value: int) -> int:
    """A comp_t: 13-bit mantissa, 3-bit base-8 exponent."""
    return (value & 0x1FFF) << (3 * (value >> 13))


def parse_acct(data: bytes) -> list[Proc]:
    """The processes of an acct v3 file (written as each process exits)."""
    if len(data) % ACCT_V3.size:
        raise ValueError(f"{len(data)} bytes: not whole {ACCT_V3.size}-byte acct_v3 records")
    procs = []
    for off in range(0, len(data), ACCT_V3.size):
        f = ACCT_V3.unpack_from(data, off)
        if f[1] != 3:
            raise ValueError(f"record at byte {off}: acct version {f[1]}, expected 3")
        cpu = (comp_t(f[10]) + comp_t(f[11])) / AHZ
        comm = f[18].split(b"\0", 1)[0].decode(errors="replace")
        procs.append(Proc(pid=f[6], ppid=f[7], start=f[8], cpu_s=cpu, comm=comm))
    return procs


def attribute(procs: list[Proc], tests: list[TestRun]) -> tuple[dict[str, float], float]:
    """CPU-seconds of the processes each test started, and of those no test started. A process
    belongs to the pytest process its ancestry reaches first, and to the test that was running
    there when it began (a second of slack: its start time is truncated to whole seconds)."""
    workers = {t.pid for t in tests}
    by_pid = {p.pid: p for p in procs}
    runs: dict[int, list[TestRun]] = defaultdict(list)
    for t in sorted(tests, key=lambda t: t.start):
        runs[t.pid].append(t)
    children: Counter[str] = Counter()
    lost = 0.0
    for p in procs:
        if p.pid in workers:
            continue  # a pytest process's own CPU is the plugin's, per test
        owner, hop = p.ppid, 0
        while owner not in workers and owner in by_pid and hop < 64:  # pids can be reused
            owner, hop = by_pid[owner].ppid, hop + 1
        during = [t for t in runs.get(owner, []) if t.start - 1 <= p.start <= t.end]
        if during:
            children[during[-1].nodeid] += p.cpu_s
        else:
            lost += p.cpu_s
    return dict(children), lost


def by_name(procs: list[Proc], workers: set[int]) -> list[tuple[str, float, int]]:
    """(name, CPU-seconds, processes) of the processes the tests started, most CPU first: Ray's
    trial workers, its daemons' threads, drivers and browsers apart. A name is the process's last
    thread's (accounting's record), so a worker that exits from a jemalloc or gRPC thread is
    counted under that thread's name."""
    cpu: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for p in procs:
        if p.pid not in workers:
            cpu[p.comm] += p.cpu_s
            count[p.comm] += 1
    return [(name, c, count[name]) for name, c in cpu.most_common()]


# ------------------------------------------------------------------ the plugin (pytest -p ...)
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    path = os.environ.get(LOG_ENV)
    start, cpu = time.time(), time.process_time()
    yield
    if path:
        run = TestRun(os.getpid(), item.nodeid, start, time.time(), time.process_time() - cpu)
        with open(path, "a") as f:  # one short line per write: the two workers never interleave
            f.write(json.dumps(run.__dict__) + "\n")


# ------------------------------------------------------------------------------------ the run
def run_suite(pytest_args: list[str], tmp: Path) -> tuple[int, float, list[Proc], list[TestRun]]:
    acct, log = tmp / "pacct", tmp / "tests.jsonl"
    acct.touch()
    subprocess.run(["accton", str(acct)], check=True, capture_output=True)
    env = {
        **os.environ,
        LOG_ENV: str(log),
        "PYTHONPATH": os.pathsep.join(
            [str(REPO), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
        ),
    }
    start = time.monotonic()
    try:
        cmd = [sys.executable, "-m", "pytest", "-p", "benchmarks.suite_cpu", *pytest_args]
        rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
    finally:
        subprocess.run(["accton", "off"], capture_output=True)
    wall = time.monotonic() - start
    tests = (
        [TestRun(**json.loads(line)) for line in log.read_text().splitlines()]
        if log.exists()
        else []
    )
    return rc, wall, parse_acct(acct.read_bytes()), tests


def report(wall: float, procs: list[Proc], tests: list[TestRun], top: int) -> None:
    children, lost = attribute(procs, tests)
    own: Counter[str] = Counter()
    for t in tests:
        own[t.nodeid] += t.cpu_s
    workers = {t.pid for t in tests}
    total = sum(p.cpu_s for p in procs)
    idle = sum(p.cpu_s for p in procs if p.pid in workers) - sum(own.values())
    print(f"\nwall {wall:.0f} s; CPU {total:.0f} s in {len(procs)} processes (x{total / wall:.2f})")
    print(f"  pytest processes in tests {sum(own.values()):.0f} s, between tests {idle:.0f} s")
    print(
        f"  processes the tests started {sum(children.values()):.0f} s; not attributed {lost:.0f} s"
    )
    started = [p.cpu_s for p in procs if p.pid not in workers]
    for lo, hi in ((5, 1e9), (1, 5), (0, 1)):
        band = [c for c in started if lo <= c < hi]
        print(f"  processes of {lo}-{'' if hi > 1e8 else hi} CPU-s: {len(band)}, {sum(band):.0f} s")
    print(f"\n{'total':>7} {'count':>6}  started processes by name (top {top})")
    for name, cpu, count in by_name(procs, workers)[:top]:
        print(f"{cpu:7.1f} {count:6d}  {name}")
    ids = sorted(set(own) | set(children), key=lambda i: -(own[i] + children.get(i, 0)))
    print(f"\n{'total':>7} {'pytest':>7} {'started':>7}  test (CPU-seconds, top {top})")
    for i in ids[:top]:
        c = children.get(i, 0.0)
        print(f"{own[i] + c:7.1f} {own[i]:7.1f} {c:7.1f}  {i}")
    files: Counter[str] = Counter()
    for i in ids:
        files[i.split("::")[0]] += own[i] + children.get(i, 0.0)
    print(f"\n{'total':>7}  file")
    for name, cpu in files.most_common(top):
        print(f"{cpu:7.1f}  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=40, help="rows of the per-test table")
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's (default -q -n 2)")
    a = parser.parse_args(argv)
    if shutil.which("accton") is None:
        print("error: accton not found: install process accounting (apt-get install acct)")
        return 2
    if os.geteuid() != 0:
        print("error: process accounting needs root (accton switches it on for the machine)")
        return 2
    uptime = ["uptime"]  # the machine's load beside the figures (it is shared)
    print(
        f"uptime before: {subprocess.run(uptime, capture_output=True, text=True).stdout}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rc, wall, procs, tests = run_suite(a.pytest_args or ["-q", "-n", "2"], Path(tmp))
        except subprocess.CalledProcessError as e:  # accton refused (a container without the right)
            print(f"error: {' '.join(e.cmd)}: {(e.stderr or b'').decode().strip() or e}")
            return 2
    print(f"uptime after: {subprocess.run(uptime, capture_output=True, text=True).stdout}")
    report(wall, procs, tests, a.top)
    return rc


if __name__ == "__main__":
    sys.exit(main())
