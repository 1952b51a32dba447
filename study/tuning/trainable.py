"""The Ray Tune trainable: `study.training.trial.run_trial` (or the cross-validation trial) with
Ray's report and checkpoint passed in. It reads only `config` and the `TrialData` handed over once
by `tune.with_parameters`; it never reads the CLI, the environment or the test split.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import ray
from ray import tune

from study.heavy_imports import gc_paused

# A trial worker imports this module first (Ray loads the trainable by reference): torch comes
# in here, with the garbage collector paused (study.heavy_imports says why)
with gc_paused():
    from study.training.checkpoints import candidates
    from study.training.config import TrainConfig
    from study.training.cv_trial import run_trial_cv
    from study.training.steps import TrialData
    from study.training.trial import run_trial
    from study.tuning.gpu_check import require_cuda


def train_trial(config: dict[str, Any], data: TrialData) -> None:
    """Ray Tune function trainable. Reports once per epoch with a checkpoint."""
    if "torch._dynamo" not in sys.modules:  # this worker's first trial
        # torch.optim imports it at the first step anyway (its methods are wrapped to stay out
        # of torch.compile's graphs): here it comes in with the collector paused, as torch did
        with gc_paused():
            import torch._dynamo  # noqa: F401
    # a GPU from Ray that torch cannot use fails the trial now, not trains it on the CPU
    require_cuda(ray.get_gpu_ids(), node_name())

    def report(metrics: dict[str, Any], directory: Any) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(directory)))

    run = run_trial_cv if data.folds is not None else run_trial  # SpaceSettings.cv_folds
    cfg = TrainConfig.from_config(config)
    try:
        run(cfg, data, report, lambda: candidates(tune.get_checkpoint()), node=node_name())
    finally:
        # reuse_actors: the next trial in this worker starts without this one's cached blocks
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def node_name() -> str:
    """Host name plus Ray's node id: several Ray nodes can share one host (tests, big machines)."""
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return f"{os.uname().nodename}:{node[:12]}" if node else os.uname().nodename
