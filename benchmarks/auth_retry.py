"""How long a client with the wrong Ray token (or none) waits before it is refused.

    python benchmarks/auth_retry.py [--timeout 120]

Starts one local Ray head with token authentication (`ray start --head --block`, its own token
file, temporary directory and ports; stopped by its pid at the end, with every process it
started), then times, each in a fresh process: a driver's `ray.init(address=...)` and `ray
status` with the right token, with a wrong one, and with none (RAY_AUTH_MODE unset and no token
file in its HOME), and `ray job submit` to the dashboard with a wrong token. Prints the exit
code, the seconds until the process ended (its start and `import ray` included) and its last line
of output; for a driver, the line says how long ray.init itself took.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import load_line  # noqa: E402 - run as a script from any directory

# the time ray.init itself takes, apart from the process's start and `import ray`
CONNECT = """
import time, ray
t0 = time.monotonic()
try:
    ray.init(address='{address}')
    print(f"ray.init connected in {{time.monotonic() - t0:.1f}} s")
except Exception as e:
    cause = " ".join(str(e.__cause__ or "").split())[:200]
    print(f"ray.init raised after {{time.monotonic() - t0:.1f}} s: {{type(e).__name__}}: {{e}}"
          f" (cause: {{cause}})")
    raise SystemExit(1)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_with(home: Path, token_file: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    if token_file is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    return env


def timed(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[str, float, str]:
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out = str(r.returncode), (r.stdout + r.stderr)
    except subprocess.TimeoutExpired as e:
        rc, out = f"killed at {timeout:.0f} s", str(e.stdout or "") + str(e.stderr or "")
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    mine = [ln for ln in lines if ln.startswith("ray.init ")]  # the driver's own timing
    return rc, time.monotonic() - t0, ((mine or lines or [""])[-1])[:400]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a client may take")
    a = p.parse_args(argv)
    print(f"load before: {load_line()}")
    with tempfile.TemporaryDirectory(prefix="ar", dir="/tmp") as tmp:
        root = Path(tmp)
        right, wrong = root / "right_token", root / "wrong_token"
        right.write_text(secrets.token_hex(32))
        wrong.write_text(secrets.token_hex(32))
        (root / "home").mkdir()
        port, dash = free_port(), free_port()
        address = f"127.0.0.1:{port}"
        head = subprocess.Popen(
            ["ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=0",
             f"--temp-dir={root / 'ray'}", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dash}", "--disable-usage-stats"],
            env=env_with(root / "home", right),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            t0 = time.monotonic()
            while timed(["ray", "status", f"--address={address}"],
                        env_with(root / "home", right), 30)[0] != "0":  # fmt: skip
                if time.monotonic() - t0 > 120:
                    raise SystemExit("the head did not come up in 120 s")
                time.sleep(1)
            print(f"head up after {time.monotonic() - t0:.1f} s at {address}")
            driver = [sys.executable, "-c", CONNECT.format(address=address)]
            status = ["ray", "status", f"--address={address}"]
            submit = ["ray", "job", "submit", f"--address=http://127.0.0.1:{dash}", "--", "true"]
            # ray.init's attempts to reach the GCS: RAY_NUM_REDIS_GET_RETRIES, 20 by default,
            # one second apart (ray/_private/node.py)
            fewer = {"RAY_NUM_REDIS_GET_RETRIES": "5"}
            cases = [
                ("driver, right token", driver, right, {}),
                ("driver, wrong token", driver, wrong, {}),
                ("driver, no token", driver, None, {}),
                ("driver, wrong token, 5 tries", driver, wrong, fewer),
                ("ray status, right token", status, right, {}),
                ("ray status, wrong token", status, wrong, {}),
                ("ray status, no token", status, None, {}),
                ("ray job submit, wrong token", submit, wrong, {}),
            ]
            print(f"{'client':30s} {'exit':>14s} {'seconds':>8s}  last line")
            for what, cmd, token, extra in cases:
                rc, s, last = timed(cmd, {**env_with(root / "home", token), **extra}, a.timeout)
                print(f"{what:30s} {rc:>14s} {s:8.1f}  {last}")
        finally:
            os.killpg(head.pid, signal.SIGTERM)  # ray start --block ends what it started
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
    print(f"load after: {load_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
