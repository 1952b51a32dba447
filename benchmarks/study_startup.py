"""Where a tiny study's seconds go, with its own Ray (`python -m study.run` on a laptop) against
joining a running Ray head (RAY_ADDRESS, as on a cluster, and as most fault-table rows do): one
trial of one epoch on the 84-image toon set, each phase timed from the console's own lines.

It also starts a trial-like Ray worker (an actor that imports torch) with the runtime_env Ray Tune
gives every trainable ({"env_vars": {"PL_DISABLE_FORK": "1"}}) and without it (a start without
it is cheaper; studies keep Tune's, as a trial in a worker started without it trained slower
in one A/B/A, within this machine's drift: benchmarks/results/study_startup.txt, 2026-12-03),
and times the two imports every study pays twice (the driver's, and each trial worker's),
the floor under any test that runs a real study in its own process: the suite's time is about
(its studies) x (this floor) on 2 cores (benchmarks/results/test_suite.txt).

    python benchmarks/study_startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import REPO

sys.path.insert(0, str(REPO / "tests"))  # the tests' hand-started Ray head
from ray_head import ray_head  # noqa: E402

SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="startup", max_epochs=1, grace_period=1,
                         num_samples=1, image_size=32, top_k=1)
def space(trial):
    return {"model": "vanilla_cnn", "width": 4, "depth": 2, "head_dense": [], "batch_size": 16,
            "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True)}
"""
# a console line (a regex on its start) -> the phase that ends when it is printed
MARKS = (
    (r"-- starting Ray", "imports + checks"),
    (r"-- decoding", "Ray start / join"),
    (r"-- tuning:", "decoding"),
    (r"\[\w+\] start \(trial", "first trial's worker"),
    (r"\[\w+\] finished:", "the trial"),
    (r"leaderboard \(", "test evaluation"),
)


def busy_cpu_s() -> float:
    """CPU-seconds the whole machine has spent busy (Linux /proc/stat; NaN elsewhere): a study's
    processes are the driver, Ray's and its workers, so only the machine's total counts them all.
    The test suite is bound by this, not by wall time (its 2 cores are ~90 % busy)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return float("nan")
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def one_study(tmp: Path, data: Path, env: dict[str, str]) -> dict[str, float]:
    tmp.mkdir(parents=True)
    (tmp / "space.py").write_text(SPACE)
    cmd = [sys.executable, "-m", "study.run", "--space", str(tmp / "space.py"),
           "--data-dir", str(data), "--storage", str(tmp / "s"), "--name", "x",
           "--no-report", "--no-probe"]  # fmt: skip
    cpu0, t0 = busy_cpu_s(), time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    seen: dict[str, float] = {}
    assert proc.stdout is not None
    last = 0.0
    for line in proc.stdout:
        now = time.monotonic() - t0
        for mark, phase in MARKS:
            if phase not in seen and re.match(mark, line):
                seen[phase], last = now - last, now
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"the study failed (exit {proc.returncode}): {' '.join(cmd)}")
    seen["exit"] = time.monotonic() - t0 - last
    seen["total"] = time.monotonic() - t0
    seen["CPU-s, whole machine"] = busy_cpu_s() - cpu0
    return seen


def worker_starts(repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(wall s, machine CPU-s) to start an actor that imports torch and answers, alternating
    Tune's runtime_env and none, on one local Ray of 2 CPUs."""
    import ray

    @ray.remote
    class Worker:
        def ping(self) -> int:
            import torch  # noqa: F401 (what a trial worker imports first)

            return os.getpid()

    tune_env = {"runtime_env": {"env_vars": {"PL_DISABLE_FORK": "1"}}}
    out: dict[str, list[tuple[float, float]]] = {"Tune's runtime_env": [], "none": []}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        time.sleep(5)  # Ray's own start-up settles
        for _ in range(repeats):
            for label, options in (("Tune's runtime_env", tune_env), ("none", {})):
                cpu0, t0 = busy_cpu_s(), time.monotonic()
                actor = Worker.options(**options).remote()
                ray.get(actor.ping.remote())
                out[label].append((time.monotonic() - t0, busy_cpu_s() - cpu0))
                ray.kill(actor)
                time.sleep(2)
    finally:
        ray.shutdown()
    return out


def import_s(module: str) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, check=True)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print("uptime:", os.popen("uptime").read().strip())
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    with tempfile.TemporaryDirectory(prefix="startup") as d:
        tmp = Path(d)
        from study.data import prepare

        prepare("toon", source="tiny", data_dir=tmp / "data", seed=0)
        runs: dict[str, list[dict[str, float]]] = {"own Ray": [], "joined head": []}
        for i in range(args.repeats):
            runs["own Ray"].append(one_study(tmp / f"own{i}", tmp / "data", env))
        with ray_head(dashboard=False) as head:
            joined = {**env, "RAY_ADDRESS": head.address,
                      "RAY_AUTH_TOKEN_PATH": head.env["RAY_AUTH_TOKEN_PATH"]}  # fmt: skip
            for i in range(args.repeats):
                runs["joined head"].append(one_study(tmp / f"head{i}", tmp / "data", joined))
    phases = [p for _, p in MARKS] + ["exit", "total", "CPU-s, whole machine"]
    print(f"\nmedian seconds of {args.repeats} tiny studies (1 trial, 1 epoch, 84 images, 32 px)")
    print(f"{'phase':<22}{'own Ray':>10}{'joined head':>13}{'ratio':>8}")
    for p in phases:
        own, join = (statistics.median(r.get(p, float("nan")) for r in runs[k]) for k in runs)
        print(f"{p:<22}{own:>10.1f}{join:>13.1f}{join / own if own else float('nan'):>8.2f}")
    starts = worker_starts(args.repeats)
    print(f"\nstarting a trial-like worker (imports torch), median of {args.repeats}")
    print(f"{'runtime_env':<22}{'wall s':>10}{'CPU-s':>8}")
    for label, runs_ in starts.items():
        wall, cpu = (statistics.median(r[i] for r in runs_) for i in (0, 1))
        print(f"{label:<22}{wall:>10.2f}{cpu:>8.2f}")
    (tw, tc), (nw, nc) = (
        tuple(statistics.median(r[i] for r in v) for i in (0, 1)) for v in starts.values()
    )
    print(f"{'none / Tune':<22}{nw / tw:>10.2f}{nc / tc:>8.2f}")
    print("\nimports every study pays (a fresh process, median of 3):")
    for module in ("study.run.driver", "study.tuning.trainable", "torch", "ray.tune"):
        print(
            f"  import {module:<24}{statistics.median(import_s(module) for _ in range(3)):6.1f} s"
        )
    print("uptime:", os.popen("uptime").read().strip())


if __name__ == "__main__":
    main()
