"""What pausing the garbage collector saves on the imports every study pays twice (its driver's,
and each trial worker's): each import set in a fresh interpreter, with the collector on (Python's
default) and inside study.heavy_imports.gc_paused, alternating, CPU-seconds of the child process.

    python benchmarks/import_gc.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from _util import REPO

# what each process imports, in its order (third-party modules: study's own now pause the
# collector themselves): the driver imports all of it inside gc_paused (study.run.__main__); a
# trial worker has imported ray.tune before it loads the trainable, whose torch and pandas then
# come in paused, and torch._dynamo (torch.optim's) at its first trial, paused again
IMPORTS = {
    "driver": ([], ["ray.tune", "torch", "pandas", "pyarrow.parquet", "optuna"]),
    "trial worker": (["ray.tune"], ["torch", "pandas", "torch._dynamo"]),
}
CHILD = """
import contextlib, resource, sys
from study.heavy_imports import gc_paused
before, modules, paused = sys.argv[1], sys.argv[2], sys.argv[3] == "paused"
for m in filter(None, before.split(",")):
    __import__(m)
with gc_paused() if paused else contextlib.nullcontext():
    for m in modules.split(","):
        __import__(m)
r = resource.getrusage(resource.RUSAGE_SELF)
print(r.ru_utime + r.ru_stime)
"""


def cpu_s(before: list[str], modules: list[str], paused: bool) -> float:
    """CPU-s of the whole child: its start, `before` (collector on), then `modules`."""
    args = [",".join(before), ",".join(modules), "paused" if paused else "on"]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print("uptime:", os.popen("uptime").read().strip())
    print(f"\nCPU-s of a fresh interpreter that imports, median of {args.repeats} (alternating)")
    print(f"{'process':<14}{'collector on':>14}{'paused':>10}{'ratio':>8}  imports")
    for name, (before, modules) in IMPORTS.items():
        on, paused = [], []
        for _ in range(args.repeats):
            on.append(cpu_s(before, modules, False))
            paused.append(cpu_s(before, modules, True))
        a, b = statistics.median(on), statistics.median(paused)
        what = ", ".join(modules) + (f" (after {', '.join(before)})" if before else "")
        print(f"{name:<14}{a:>14.2f}{b:>10.2f}{b / a:>8.2f}  {what}")
    print("uptime:", os.popen("uptime").read().strip())


if __name__ == "__main__":
    main()
