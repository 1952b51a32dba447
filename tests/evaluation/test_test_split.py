"""Where the test-split evaluation runs: in the driver on a local CPU-only Ray (no new worker
process importing torch), as a Ray task otherwise; either way the same function, the same
numbers."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import joined_ray

pytestmark = pytest.mark.study


def test_a_local_cpu_study_evaluates_in_its_driver(asha_study) -> None:
    """The session's ASHA study (local Ray, no GPU) says where its evaluation ran."""
    assert "evaluating the best 3 trial(s)" in asha_study.stdout
    assert "Grad-CAM of the best (in this process)" in asha_study.stdout


def test_the_driver_and_a_ray_task_evaluate_alike(asha_study, toon_dir, shared_ray) -> None:
    """The same trials scored in this process and as the Ray task a cluster or GPU study uses:
    identical metrics, predictions and Grad-CAM rows; and a GPU study keeps the Ray task."""
    from study.data import open_dataset
    from study.evaluation.test_split import evaluates_here, run_evaluation

    top = asha_study.trials.dropna(subset=["test_acc"])["trial_id"].tolist()
    assert len(top) == 3
    args = (str(asha_study.dir), open_dataset(toon_dir, "toon"), top, 32)
    cpu = {"cpu": 1, "gpu": 0.0}
    with joined_ray(shared_ray):  # the task runs on the test head, as the study's trials did
        assert evaluates_here(cpu)
        assert not evaluates_here({"cpu": 1, "gpu": 1.0})  # trials on a GPU: the task gets one
        here = run_evaluation(args, cpu, here=True)
        task = run_evaluation(args, cpu, here=False)
    assert set(here["metrics"]) == set(top)
    for tid in top:
        a, b = (json.dumps(m["metrics"][tid], sort_keys=True, default=float) for m in (here, task))
        assert a == b, tid  # bit for bit (NaN too: a class never predicted has no precision)
    pd.testing.assert_frame_equal(here["predictions"], task["predictions"])
    assert not here["gradcam"].empty
    pd.testing.assert_frame_equal(here["gradcam"], task["gradcam"])
    # and the study's own run recorded these numbers
    stored = asha_study.trials.set_index("trial_id").loc[top, "test_acc"]
    assert stored.tolist() == [here["metrics"][t]["test_acc"] for t in top]
