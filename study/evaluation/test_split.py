"""After tuning: the one read of the test split (the best trials by validation), the leaderboard,
the run's exit status, and what study.json records about the code that ran."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray
import torch
from ray.util.client import ray as client

from study import console
from study import storage as st
from study.data.store import PreparedDataset
from study.evaluation.inference import evaluate_on_test
from study.results.lookups import select_top
from study.results.schema import GRADCAM, PREDICTIONS, TRIALS
from study.results.statistics import Baseline
from study.results.tables import read_table, write_json, write_parquet
from study.results.trials import record_test_scores
from study.training.steps import pick_device


def evaluates_here(resources: dict[str, float]) -> bool:
    """Whether the test evaluation runs in this driver rather than as a Ray task: when the trials
    ran without a GPU, this process sees none either (same device, same numbers) and Ray is one
    node on this machine (so its data and checkpoints are the driver's). A Ray task there is a
    new worker process importing torch: seconds per study for nothing. On a cluster, or with a
    GPU, it stays a Ray task, so it runs where the trials ran."""
    if resources["gpu"] or pick_device().type != "cpu" or client.is_connected():
        return False
    nodes = [n for n in ray.nodes() if n["Alive"]]
    return len(nodes) == 1 and nodes[0]["NodeID"] == ray.get_runtime_context().get_node_id()


def run_evaluation(
    args: tuple, resources: dict[str, float], here: bool, fn: Callable = evaluate_on_test
) -> Any:
    """fn(*args) (the test evaluation, or the linear probe) in this process (with the threads a
    Ray task of `resources["cpu"]` CPUs gets) or as that Ray task: the same function either
    way."""
    if not here:
        task = ray.remote(fn).options(num_cpus=resources["cpu"], num_gpus=resources["gpu"])
        return ray.get(task.remote(*args))
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(resources["cpu"])))  # Ray's OMP_NUM_THREADS for the task
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


def evaluate_best(study_dir: str, ds: PreparedDataset, settings, resources) -> None:
    """Test-split evaluation of the best `top_k` trials by validation; the only test-split read."""
    trials = read_table(study_dir, TRIALS)
    if trials is None or trials.empty:
        return
    ds.check_unchanged()  # before choosing: the study's splits, or nothing
    chance = Baseline.from_manifest(ds.manifest)  # skip at-chance trials
    top = select_top(
        trials, settings.top_k, {"metric": settings.metric, "mode": settings.mode}, chance
    )
    if not top:
        return
    here = evaluates_here(resources)
    console.phase(
        f"evaluating the best {len(top)} trial(s) by validation on the test split, and Grad-CAM "
        f"of the best ({'in this process' if here else 'as a Ray task'})"
    )
    args = (study_dir, ds, top, settings.image_size)
    out = run_evaluation(args, resources, here)
    record_test_scores(study_dir, out["metrics"])  # trials.parquet's owner writes its columns
    write_parquet(out["predictions"], st.join(study_dir, PREDICTIONS))
    if not out["gradcam"].empty:
        write_parquet(out["gradcam"], st.join(study_dir, GRADCAM))
    write_json(
        {tid: {k: m[k] for k in ("per_class", "confusion")} for tid, m in out["metrics"].items()},
        st.join(study_dir, "test_metrics.json"),
    )
