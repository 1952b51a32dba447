"""A Ray head started by hand (`ray start --head --block`), as the README's "any Ray cluster"
section does: token authentication with its own token file, its own temp dir and free ports, in
a new session; stopped by killing that session's process group only (`ray stop` would stop every
Ray on the machine). Used by the job-submit test (with its dashboard, the job API) and, one per
test process, by most studies of the suite (without: tests/conftest.py's shared_ray; they join it
through RAY_ADDRESS or as the test process's driver, which saves each study the start and stop of
its own Ray: benchmarks/results/study_startup.txt)."""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HEAD_START_S = 90  # `ray start --head` up, or the test fails saying so


@dataclass
class Head:
    address: str  # 127.0.0.1:PORT, the GCS: what drivers join (RAY_ADDRESS, --address)
    dashboard: str | None  # http://127.0.0.1:PORT, the job API (when started with it)
    env: dict[str, str]  # what every Ray CLI call and driver of this cluster needs
    temp_dir: Path


# The head's ports come from below the kernel's ephemeral range (and above Ray's worker ports,
# 10002-19999), where no other Ray on the machine draws its own: the tests' own Rays and the
# other xdist worker's take random ports from the ephemeral range and bind some to the node's IP
# alone, and such a socket on our GCS port would take every connection to NODE_IP:PORT (where a
# driver given 127.0.0.1:PORT connects: Ray swaps loopback for the node's IP). A precaution: CI's
# two failures with "Authentication token is missing or incorrect" (2026-12-03), first put down
# to this, were drivers without RAY_AUTH_MODE (tests/conftest.py).
# Each xdist worker draws from its own slice: two heads starting at once cannot pick one port
# in the seconds before either binds it.
PORTS_FROM = 20000


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (what a bind to port 0 draws from)."""
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def port_range() -> tuple[int, int]:
    """[first, end) of the ports this test process draws from."""
    low = ephemeral_low()
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), index + 1)
    size = (low - PORTS_FROM) // count
    return PORTS_FROM + index * size, PORTS_FROM + (index + 1) * size


def free_port() -> int:
    first, end = port_range()
    for _ in range(200):
        port = random.randrange(first, end) if end - first > 500 else 0
        with socket.socket() as s:
            try:  # fails while anything holds the port, on any address
                s.bind(("", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in {first}-{end - 1}")


@contextmanager
def ray_head(
    *, dashboard: bool, num_cpus: int = 2, prestart_workers: bool = True, log_monitor: bool = True
) -> Iterator[Head]:
    # short: Ray's unix sockets live under it (108-byte path limit)
    temp_dir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    env |= {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if not prestart_workers:  # no idle workers for each driver that joins (tests/conftest.py)
        env["RAY_prestart_worker_first_driver"] = "0"
    gcs = free_port()
    ports = ["--port", str(gcs), "--ray-client-server-port", str(free_port()),
             "--dashboard-agent-listen-port", str(free_port())]  # fmt: skip
    dash = free_port() if dashboard else None
    if dash is not None:
        ports += ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash)]
    else:
        ports += ["--include-dashboard", "false"]
    cmd = [shutil.which("ray") or "ray", "start", "--head", "--block", "--disable-usage-stats",
           "--node-ip-address", "127.0.0.1", *ports, "--num-cpus", str(num_cpus),
           "--temp-dir", str(temp_dir / "r")]  # fmt: skip
    if not log_monitor:  # it tails every worker's log files for drivers that print them
        cmd += ["--include-log-monitor", "false"]
    log_path = temp_dir / "head.log"
    log = log_path.open("w")
    # cwd without the project: a job gets its code from --working-dir only
    head = subprocess.Popen(
        cmd, env=env, cwd=temp_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.time() + HEAD_START_S
        while "--block" not in log_path.read_text():  # printed once all is up
            if head.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start failed:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        address = f"127.0.0.1:{gcs}"
        yield Head(address, dash and f"http://127.0.0.1:{dash}", env, temp_dir)
    finally:
        for sig, wait in ((signal.SIGTERM, 2), (signal.SIGKILL, 5)):
            try:
                os.killpg(head.pid, sig)  # the group `ray start` leads: the processes we started
            except ProcessLookupError:
                break
            deadline = time.time() + wait
            # poll() reaps `ray start` itself: a zombie leader still counts as the group's, and
            # the wait ran out its full 2 + 5 s after every process had ended
            while time.time() < deadline and (head.poll() is None or _group_alive(head.pid)):
                time.sleep(0.2)
        head.wait(timeout=10)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
