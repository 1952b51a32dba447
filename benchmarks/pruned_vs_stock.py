"""ASHA-stopped trials told to Optuna as PRUNED (ours) vs COMPLETE with their truncated score (Ray's
stock OptunaSearch), on the demo space over a few seeds: best val acc reached per epochs spent.

    python benchmarks/pruned_vs_stock.py [--quick] [--seeds 0 1 2] [--num-samples N]

Prints one table from one run: per seed and variant the best val acc, the epochs trained, the best
val acc after 50 % of the epochs, wall time; then the means and the ratios ours / stock.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SPACE = """
from dataclasses import replace
from search_spaces import demo
SETTINGS = replace(demo.SETTINGS, searcher={searcher!r}, num_samples={n}, max_epochs={e},
                   grace_period={g}, image_size={size})
space = demo.space
"""


def run(searcher: str, seed: int, args, data_dir: Path, tmp: Path) -> dict:
    space = tmp / f"demo_{searcher}.py"
    space.write_text(SPACE.format(searcher=searcher, n=args.num_samples, e=args.max_epochs,
                                  g=args.grace_period, size=args.image_size))
    name = f"{searcher}-{seed}"
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "study.run", "--space", str(space), "--seed",
                        str(seed), "--data-dir", str(data_dir), "--storage", str(tmp / "s"),
                        "--name", name, "--no-report"], cwd=REPO, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"study {name} failed:\n{r.stderr[-3000:]}")
    # `time` is Ray's whole-second timestamp: epochs within one second keep their epoch order
    epochs = pd.read_parquet(tmp / "s" / name / "epochs.parquet").sort_values(
        ["time", "epoch"], kind="stable")
    best_so_far = epochs["val_acc"].cummax().to_numpy()
    half = best_so_far[max(0, len(best_so_far) // 2 - 1)]
    return {"seed": seed, "searcher": searcher, "best_val_acc": best_so_far[-1],
            "val_acc_at_half_epochs": half, "epochs": len(epochs), "wall_s": time.time() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="toon small at 32 px, 16 trials")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=None)
    p.add_argument("--max-epochs", type=int, default=None)
    args = p.parse_args()
    # more trials than TPE's 10 random start-up trials: before that it never reads what it is told
    quick = {"num_samples": 16, "max_epochs": 8, "grace_period": 2, "image_size": 32,
             "toon": "small"}
    full = {"num_samples": 24, "max_epochs": 12, "grace_period": 3, "image_size": 48,
            "toon": "default"}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        subprocess.run([sys.executable, "-m", "study.data", "prepare", "toon", "--source",
                        args.toon, "--data-dir", str(tmp / "data")], check=True,
                       capture_output=True)
        rows = [run(s, seed, args, tmp / "data", tmp)
                for seed in args.seeds for s in ("study", "stock")]
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 140)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    mean = df.groupby("searcher")[["best_val_acc", "val_acc_at_half_epochs", "epochs",
                                   "wall_s"]].mean()
    print("\nmean over seeds", args.seeds)
    print(mean.to_string(float_format=lambda v: f"{v:.3f}"))
    ratio = mean.loc["study"] / mean.loc["stock"]
    print("\nratio ours (PRUNED) / stock (COMPLETE with truncated score):")
    print(ratio.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
