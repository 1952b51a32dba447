"""How often a study rewrites Ray Tune's experiment state: Ray's own pace ("auto", what the driver
uses) against TUNE_GLOBAL_CHECKPOINT_S=0 (every step of Tune's loop, what it used before).

One small real study per setting, run by `python -m study.run` in this process, with every file
published into the study folder counted (study.storage writes them all: our tables through
write_bytes, Ray's through ray_filesystem). Prints one row per setting and the ratio.

    python benchmarks/state_writes.py [--trials 4 --epochs 4]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import REPO

SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="state writes", max_epochs={epochs},
                         grace_period={epochs}, num_samples={trials}, image_size=32, top_k=1)
def space(trial):
    return {{"model": "vanilla_cnn", "width": 8, "depth": 2, "head_dense": [], "batch_size": 16,
            "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True)}}
"""
KINDS = ("experiment_state", "search_gen_state", "searcher-state", "trials.parquet", "study.json")


def one_study(period: str | None, trials: int, epochs: int, data: Path, tmp: Path) -> dict:
    """Run one study in this process with `period` as TUNE_GLOBAL_CHECKPOINT_S (None: unset)."""
    import study.storage as st
    from study.run import __main__ as run

    counts: collections.Counter[str] = collections.Counter()
    publish = st._publish

    def counted(tmp_file: str, dest: Path) -> None:
        counts[next((k for k in KINDS if dest.name.startswith(k)), "other")] += 1
        publish(tmp_file, dest)

    st._publish = counted
    os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)
    if period is not None:
        os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = period
    space = tmp / "space.py"
    space.write_text(SPACE.format(trials=trials, epochs=epochs))
    t0 = time.time()
    args = ["--space", str(space), "--data-dir", str(data), "--storage", str(tmp / "s"),
            "--name", f"p{period}", "--no-report", "-q"]  # fmt: skip
    rc = run.main(args)
    st._publish = publish
    return {"rc": rc, "wall_s": time.time() - t0, **{k: counts[k] for k in (*KINDS, "other")}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=4)
    a = p.parse_args()
    from study.data import prepare

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime before: {load}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        prepare("toon", source="tiny", data_dir=tmp / "data", seed=0)
        rows = {
            "auto (now)": one_study(None, a.trials, a.epochs, tmp / "data", tmp),
            "0 (before)": one_study("0", a.trials, a.epochs, tmp / "data", tmp),
        }
    print(f"{a.trials} trials x {a.epochs} epochs (toon tiny, 32 px), files published per study:")
    cols = ["rc", "wall_s", *KINDS, "other"]
    print(f"{'TUNE_GLOBAL_CHECKPOINT_S':<26}" + "".join(f"{c:>18}" for c in cols))
    for name, r in rows.items():
        cells = "".join(f"{r[c]:>18.1f}" if c == "wall_s" else f"{r[c]:>18}" for c in cols)
        print(f"{name:<26}{cells}")
    now, before = rows["auto (now)"], rows["0 (before)"]
    ratio = now["experiment_state"] / max(1, before["experiment_state"])
    print(f"experiment_state writes, auto / 0: {ratio:.2f}")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime after: {load}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
