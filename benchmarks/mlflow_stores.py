"""What `--callback mlflow` costs Tune's driver per reported result, by MLflow store.

    python benchmarks/mlflow_stores.py [--results 30]

Ray's MLflowLoggerCallback logs each result of each trial from the driver's event loop, one
`log_metric` call per key (ray.air._internal.mlflow._MLflowLoggerUtil.log_metrics, which the
callback calls). This times exactly that call for a result of the size a study's trial reports
(51 keys: its metrics, Tune's bookkeeping and the flattened config), against MLflow's file store
(the study's default, STUDY/mlruns) and an SQLite store, each in a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import load_line  # noqa: E402 - run as a script from any directory

# the keys one demo-study result logs to MLflow (counted in a smoke study's run folder)
METRICS = ("best_epoch best_value done epoch epoch_s images_per_s iterations_since_restore lr "
           "micro_batch params pid seed should_checkpoint time_since_restore time_this_iter_s "
           "time_total_s timestamp train_acc train_loss training_iteration val_acc val_loss "
           "val_macro_f1").split()  # fmt: skip
CONFIG = [f"config/k{i}" for i in range(51 - len(METRICS))]


def per_result_s(uri: str, results: int) -> list[float]:
    from ray.air._internal.mlflow import _MLflowLoggerUtil

    util = _MLflowLoggerUtil()
    util.setup_mlflow(
        tracking_uri=uri, experiment_name="bench", create_experiment_if_not_exists=True
    )
    run_id = util.start_run(run_name="trial", tags={}).info.run_id
    times = []
    for step in range(1, results + 1):
        result = {k: float(step) for k in (*METRICS, *CONFIG)}
        t0 = time.perf_counter()
        util.log_metrics(step=step, metrics_to_log=result, run_id=run_id)
        times.append(time.perf_counter() - t0)
    util.end_run(run_id=run_id)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=int, default=30, help="results logged per store")
    a = p.parse_args(argv)
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # as the driver sets it for its default
    print(f"load before: {load_line()}")
    print(f"{'store':8s} {'keys':>4s} {'median s/result':>16s} {'max s/result':>13s}")
    with tempfile.TemporaryDirectory() as tmp:
        for store, uri in (
            ("file", Path(tmp, "mlruns").as_uri()),
            ("sqlite", f"sqlite:///{tmp}/mlflow.db"),
        ):
            t = per_result_s(uri, a.results)
            print(f"{store:8s} {len(METRICS) + len(CONFIG):4d} {statistics.median(t):16.4f} "
                  f"{max(t):13.4f}")  # fmt: skip
    print(f"load after: {load_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
