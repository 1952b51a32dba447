"""What one result costs the driver: the appending ResultsWriter vs rewriting both tables.

    python benchmarks/append_results.py [--trials 500] [--epochs 100] [--concurrent 8]
                                        [--rewrite-results 10]

Drives `study.tuning.callbacks.ResultsWriter` as Tune does (on_trial_result, on_trial_complete,
on_experiment_end) with fake trials, no Ray workers: --trials trials of --epochs epochs each,
--concurrent at a time, every result timed. The "rewrite" writer is the same class made to
rewrite trials.parquet and epochs.parquet whole at every result, as the writer did before
(40 trials x 60 epochs cost 22 s in all, and Ray warned "process_trial_result took 0.51 s"); its
cost grows with the study, so it is timed for --rewrite-results results at the study's full size
(epochs of the last trials before their last), after the appending writer wrote all before them.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import load_line, ratio, table  # noqa: E402 - run as a script
from study import storage  # noqa: E402
from study.results.schema import EPOCHS
from study.results.tables import epochs_frame, write_parquet
from study.results.trials import config_dtypes
from study.tuning.callbacks import ResultsWriter

HYPERPARAMETERS = {
    "model": {"kind": "categorical", "choices": ["googlenet", "vanilla_cnn"]},
    "lr": {"kind": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "dropout": {"kind": "float", "low": 0.0, "high": 0.5, "log": False},
    "head_layers": {"kind": "int", "low": 0, "high": 2, "log": False},
}


class RewriteWriter(ResultsWriter):
    """The writer before appending: both tables rewritten whole at every result."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        super().on_trial_result(iteration, trials, trial, result, **info)
        self.flush()
        rows = [r for mine in self.epochs.values() for r in mine.values()]
        write_parquet(epochs_frame(rows, self.study), storage.join(self.dir, EPOCHS))


def fake_trial(i: int) -> SimpleNamespace:
    config = {
        "model": ("googlenet", "vanilla_cnn")[i % 2],
        "lr": 1e-3 * (1 + i % 7),
        "dropout": 0.1 * (i % 5),
        "head_layers": i % 3,
        "max_epochs": 100,
        "seed": i,
    }
    config["suggested"] = {k: config[k] for k in HYPERPARAMETERS}
    return SimpleNamespace(trial_id=f"t{i:05d}", config=config, error_file=None)


def result(trial: SimpleNamespace, epoch: int, last: bool) -> dict:
    acc = 0.1 + 0.8 * (1 - math.exp(-epoch / 20)) * (0.5 + (hash(trial.trial_id) % 50) / 100)
    return {
        "epoch": epoch,
        "train_loss": 2.0 / epoch,
        "train_acc": acc * 1.1,
        "val_loss": 1.9 / epoch,
        "val_acc": acc,
        "val_macro_f1": acc * 0.9,
        "epoch_s": 1.5,
        "images_per_s": 2000.0,
        "micro_batch": 64,
        "lr": trial.config["lr"],
        "params": 120_000,
        "node": "bench",
        "device": "cpu",
        "end_reason": "max_epochs" if last else "",
        "timestamp": time.time(),
    }


def schedule(trials: int, epochs: int, concurrent: int):
    """(trial, epoch) in the order a study with `concurrent` trials at a time reports them."""
    for start in range(0, trials, concurrent):
        group = range(start, min(start + concurrent, trials))
        for epoch in range(1, epochs + 1):
            for i in group:
                yield i, epoch


def drive(writer: ResultsWriter, steps, trials: list, epochs: int) -> list[float]:
    """Feed results to the writer; the seconds each on_trial_result (and trial end) took."""
    costs = []
    for i, epoch in steps:
        t = trials[i]
        t0 = time.perf_counter()
        writer.on_trial_result(0, [], t, result(t, epoch, epoch == epochs))
        if epoch == epochs:
            writer.on_trial_complete(0, [], t)
        costs.append(time.perf_counter() - t0)
    return costs


def summary(name: str, costs: list[float], total_results: int, note: str) -> dict:
    ms = sorted(c * 1000 for c in costs)
    return {
        "writer": name,
        "results timed": len(ms),
        "mean ms/result": statistics.fmean(ms),
        "p50 ms": ms[len(ms) // 2],
        "p99 ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max ms": ms[-1],
        "study total s": statistics.fmean(ms) * total_results / 1000,
        "timed at": note,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--concurrent", type=int, default=8)
    p.add_argument("--rewrite-results", type=int, default=10, help="results timed for rewrite")
    p.add_argument("--keep", type=Path, default=None, help="write the study here (kept)")
    a = p.parse_args(argv)
    print(load_line())
    n = a.trials * a.epochs
    trials = [fake_trial(i) for i in range(a.trials)]
    columns = config_dtypes(HYPERPARAMETERS, [t.config for t in trials[:2]])
    steps = list(schedule(a.trials, a.epochs, a.concurrent))
    g = a.trials - (a.trials - 1) // a.concurrent * a.concurrent  # trials in the last group
    k = max(1, min(a.rewrite_results, g * (a.epochs - 1)))
    timed = slice(len(steps) - g - k, len(steps) - g)  # mid-trial results at full size
    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or Path(tmp)
        # appending: the whole study, every result timed
        new = ResultsWriter(root / "append", dataset="bench", columns=columns)
        new.setup()
        costs = drive(new, steps, trials, a.epochs)
        t0 = time.perf_counter()
        new.on_experiment_end([])
        compact_s = time.perf_counter() - t0
        rows_new = len(epochs_frame([r for m in new.epochs.values() for r in m.values()], "x"))
        # rewriting: the study up to the timed results written by the appending writer, then
        # those results through the rewriting one (its cost at the study's full size)
        before = ResultsWriter(root / "rewrite", dataset="bench", columns=columns)
        before.setup()
        drive(before, steps[: timed.start], trials, a.epochs)
        before.flush()
        old = RewriteWriter(root / "rewrite", dataset="bench", columns=columns)
        old.setup()
        old_costs = drive(old, steps[timed], trials, a.epochs)
    rows = [
        summary("append (now)", costs, n, f"all {n:,} results"),
        summary("rewrite (before)", old_costs, n, f"{k} of the last {g + k} of {n:,}"),
    ]
    print(table(rows, f"per-result cost, {a.trials} trials x {a.epochs} epochs", digits=3))
    print(
        f"append: {rows_new:,} epoch rows; merging the logs into epochs.parquet at the end took "
        f"{compact_s:.2f} s (once per run)"
    )
    late = costs[timed]
    print(
        f"per-result cost at full size: append {statistics.fmean(late) * 1000:.3f} ms, rewrite "
        f"{statistics.fmean(old_costs) * 1000:.1f} ms "
        f"({ratio(statistics.fmean(old_costs), statistics.fmean(late)):,.0f}x); "
        f"'study total s' of rewrite assumes its full-size cost for every result (an upper bound)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
