"""One trial without Ray: `setup_trial` makes a config real, `train_epoch` trains one epoch of it,
`run_trial` trains it epoch by epoch.

`run_trial` validates after every epoch, writes the epoch's checkpoint (on a background thread,
while it validates) and hands metrics and the finished checkpoint directory to the caller's
`report`; it resumes from the first readable checkpoint the caller's `checkpoint` returns. The
Ray Tune trainable (`study.tuning.trainable`) passes `tune.report` and Ray's checkpoint in;
confirmation runs (`study.training.fit`), cross-validation trials (`study.training.cv_trial`), tests
and benchmarks call these directly. This module never imports Ray.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from study.data import Augment, AugmentConfig
from study.models import count_gflops, count_params, input_norm
from study.training import faults as inject
from study.training.checkpoints import (
    CheckpointWriter,
    restore,
    snapshot,
    write_best,
    write_last,
    write_meta,
)
from study.training.compiling import StepProbe, compile_choice
from study.training.config import TrainConfig
from study.training.epoch_record import BestTracker, EpochRecord, TrialStamp, restore_note
from study.training.feed import BatchFit, DeviceSums, batches, prefetched
from study.training.steps import (
    Diverged,
    TrialData,
    amp_dtype,
    build_model,
    class_weight_tensor,
    evaluate_val,
    lr_factor,
    make_optimizer,
    pick_device,
    seed_everything,
    train_step,
    unwrap,
)
from study.training.transfer import warm_start


class Checkpoint(Protocol):
    """A checkpoint to resume from: Ray's `tune.Checkpoint`, or `checkpoints.LocalCheckpoint`."""

    path: str

    def as_directory(self) -> Any: ...


# metrics and the epoch's complete checkpoint directory (removed once report returns)
Report = Callable[[dict[str, Any], Path], None]


# the checkpoints to resume from, newest first; empty for a fresh start. Called once, after the
# model is built and before the first epoch trains
Resume = Callable[[], Sequence[Checkpoint]]


@dataclass
class Training:
    """A config made real: model (warm-started if the config says so), optimiser, input pipeline,
    the micro-batch that fits, and the generator that orders the batches."""

    cfg: TrainConfig
    device: torch.device
    model: nn.Module  # torch.compile's wrapper once a trial decides to compile
    opt: torch.optim.Optimizer
    base_lrs: list[float]
    aug: Augment
    weight: torch.Tensor | None
    scaler: torch.amp.GradScaler
    params: int
    gen: torch.Generator
    fit: BatchFit
    # train and val resized with the filter the model expects (TrialData.for_model)
    data: TrialData
    note: str = ""
    probe: StepProbe | None = field(default=None, repr=False)

    def set_epoch_lr(self, epoch: int) -> None:
        """The schedule's learning rate for a 0-based epoch."""
        for g, base in zip(self.opt.param_groups, self.base_lrs, strict=True):
            g["lr"] = base * lr_factor(self.cfg, epoch)

    def train(
        self,
        data: TrialData,
        epoch: int,
        order_seed: int | None = None,
        faults: dict | None = None,
    ) -> tuple[float, float, int]:
        """Train the 0-based `epoch` on data.train: (mean loss, accuracy, images seen).

        The batch order depends only on `order_seed` (default: from the config's seed and the
        epoch), so a resumed trial sees the same batches as an uninterrupted one would have."""
        self.set_epoch_lr(epoch)
        self.gen.manual_seed(self.cfg.seed * 1_000 + epoch if order_seed is None else order_seed)
        return train_epoch(self, data, epoch + 1, faults)

    def validate(
        self, data: TrialData, batch_size: int | None = None
    ) -> tuple[float, float, float]:
        """(val loss, val accuracy, val macro F1), eager: compiling costs one graph, not two.
        Default batch: 128, or less after the training micro-batch shrank (BatchFit.val_batch)."""
        batch = batch_size or self.fit.val_batch
        return evaluate_val(unwrap(self.model), data, self.aug, self.device, batch)


def train_epoch(
    t: Training, data: TrialData, epoch: int = 1, faults: dict | None = None
) -> tuple[float, float, int]:
    """Train one epoch of `data.train` with `t` (its model, optimiser, augmentation, class
    weights, scaler, batch order generator and micro-batch): (mean loss, accuracy, images seen).

    `epoch` is 1-based and names the epoch in faults and errors; the learning rate and the
    generator's seed are set by the caller (`Training.train`). A CUDA out-of-memory error halves
    the micro-batch and retries the step (`BatchFit`); raises Diverged on a non-finite loss."""
    model, opt, aug, cfg, device, gen, fit = t.model, t.opt, t.aug, t.cfg, t.device, t.gen, t.fit
    weight, scaler, probe = t.weight, t.scaler, t.probe
    model.train()
    # running sums stay on the device and reach the host without a sync (see DeviceSums)
    sums = DeviceSums(2, device)  # (loss x images, correct)
    seen = 0
    # each CUDA poll queues a copy: every 16 steps; a NaN stays NaN, so it is only found late
    poll_every = 16 if device.type == "cuda" else 1
    # batch norm cannot train on a single image: drop a last batch of one
    order = [i for i in batches(len(data.train.labels), cfg.batch_size, gen) if len(i) > 1]
    fault = (lambda n: inject.in_batch(faults, epoch, n)) if faults else None
    # the model's kernel constraint (Classifier.constrain) holds after every step; found through
    # a torch.compile wrapper
    constrain = getattr(getattr(model, "_orig_mod", model), "constrain", lambda: None)
    for step, (idx, x, y) in enumerate(prefetched(data.train, order, device)):
        if probe is not None:
            probe.at(step, len(order), device)
        # drawn once per batch: a retried or split step sees the same images
        draw = aug.draw(len(idx), gen).to(device)
        while True:
            oom = None
            try:
                step_sums = train_step(
                    model, x, y, aug, draw, cfg, weight, scaler, fit.micro, fault
                )
                break
            except torch.OutOfMemoryError as e:
                oom = e
            # outside the except block, so the traceback's activations can be freed
            opt.zero_grad(set_to_none=True)
            fit.shrink(epoch, oom)
            oom = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
        step_sums[0] *= len(idx)  # the batch's mean loss -> its sum over the images
        sums.add(step_sums)
        host = sums.poll() if step % poll_every == 0 else None
        if host is not None and not math.isfinite(host[0]):
            raise Diverged(f"training loss became {host[0]} in epoch {epoch} after {seen} images")
        scaler.step(opt)
        scaler.update()
        constrain()
        opt.zero_grad(set_to_none=True)
        seen += len(idx)
    loss_sum, correct = sums.total()  # the epoch's one wait for the device
    mean_loss = loss_sum / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise Diverged(f"training loss became {mean_loss} in epoch {epoch}")
    return mean_loss, correct / max(seen, 1), seen


@dataclass(frozen=True)
class Trained:
    """An epoch's training as the trial loops see it: its result, or why it ends the trial."""

    loss: float
    acc: float
    seen: int
    end_reason: str = ""  # "diverged" or "oom"; "" when the epoch trained
    error: str = ""


def train_or_end(
    t: Training,
    data: TrialData,
    epoch: int,
    order_seed: int | None = None,
    faults: dict | None = None,
    prefix: str = "",
) -> Trained:
    """`t.train` the 0-based `epoch`, for both trial loops. A diverged loss, or an out-of-memory
    error that even the smallest micro-batch meets, ends the trial: it is returned (its error
    after `prefix`) to be reported, not raised."""
    try:
        return Trained(*t.train(data, epoch, order_seed, faults))
    except Diverged as e:
        return Trained(math.nan, 0.0, 1, "diverged", f"{prefix}{e}")
    except torch.OutOfMemoryError as e:  # even the smallest micro-batch failed: end it
        error = str(e) if str(e).startswith("out of memory") else f"out of memory: {e}"
        if t.device.type == "cuda":
            torch.cuda.empty_cache()
        return Trained(math.nan, 0.0, 1, "oom", f"{prefix}{error[:400]} (epoch {epoch + 1})")


def setup_trial(
    cfg: TrainConfig, data: TrialData, device: torch.device, *, reseed: bool = True
) -> Training:
    """The one place a model, its optimiser and its input pipeline are made from a config.

    Sets the config's torch threads and, unless `reseed` is False, seeds torch and numpy with
    the config's seed (a cross-validation trial seeds once for all its folds' models). The
    returned `data` is `data` at the resize filter the model expects: train and validate on it."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    gen = seed_everything(cfg.seed) if reseed else torch.Generator().manual_seed(cfg.seed)
    k = len(data.classes)
    model = build_model(cfg, k, device)
    data = data.for_model(model, f"model {cfg.model!r}")
    note = ""
    if cfg.init_from:  # before the optimiser: it holds the trainable (unfrozen) tensors
        note = warm_start(model, cfg.init_from, data.classes)
    opt = make_optimizer(cfg, model)
    return Training(
        cfg=cfg,
        device=device,
        model=model,
        opt=opt,
        base_lrs=[g["lr"] for g in opt.param_groups],
        # normalised as the backbone's weights expect (pretrained_cfg), not always ImageNet's
        aug=Augment(AugmentConfig.from_strength(cfg.aug_strength), *input_norm(model)),
        weight=class_weight_tensor(data.train.labels, k, device) if cfg.class_weights else None,
        scaler=torch.amp.GradScaler(enabled=amp_dtype(device) == torch.float16),
        params=count_params(model),
        gen=gen,
        fit=BatchFit(cfg.batch_size),
        data=data,
        note=note,
    )


def trial_stamp(t: Training, node: str) -> TrialStamp:
    """What each of the trial's reports repeats. Its GFLOPs are counted here, once per trial, in
    the worker that built the model and imported torch._dynamo for the optimiser anyway: a report
    that counted them itself would import it too (study.report.architectures)."""
    gflops = count_gflops(t.model, tuple(t.data.train.images.shape[-2:]))
    return TrialStamp(
        params=t.params, gflops=gflops, device=str(t.device), node=node, seed=t.cfg.seed
    )


def run_trial(
    cfg: TrainConfig,
    data: TrialData,
    report: Report,
    checkpoint: Resume,
    *,
    device: torch.device | None = None,
    node: str = "",
) -> None:
    """Train `cfg` up to max_epochs, validating, checkpointing and reporting after each epoch.

    Ends early on patience, a diverged loss or an out-of-memory error no micro-batch avoids
    (reported with `end_reason`/`error`, not raised). `node` names the machine in the metrics
    (default: the host name)."""
    device = device or pick_device()
    faults = inject.parse(cfg.fault)
    t = setup_trial(cfg, data, device)
    data = t.data  # at the model's resize filter
    torch.backends.cudnn.benchmark = True
    start_epoch, history, best, best_state, note = 0, [], BestTracker(), None, t.note
    candidates = checkpoint()
    if candidates:  # a retry after a failure: continue where the last good report left off
        start_epoch, history, best_dict, best_state, note = restore(
            candidates, t.model, t.opt, device
        )
        best = BestTracker.resumed(best_dict)
    # "auto" on CUDA times this run's first epoch eagerly and decides after it
    if cfg.compile == "auto" and device.type == "cuda":
        t.probe = StepProbe()
    stamp = trial_stamp(t, node)  # before torch.compile: counting a compiled model compiles it
    compiled = None if t.probe else compile_choice(cfg.compile, device, None, 0)
    if compiled and compiled[0]:
        t.model = torch.compile(t.model)
    writer = CheckpointWriter()
    try:
        for epoch in range(start_epoch, cfg.max_epochs):
            t0 = time.perf_counter()
            trained = train_or_end(t, data, epoch, faults=faults)
            train_s = time.perf_counter() - t0
            if compiled is None:  # auto on CUDA: compile from the next epoch on if it pays
                assert t.probe is not None
                planned = t.probe.steps_per_epoch * (cfg.max_epochs - epoch - 1)
                compiled = compile_choice(cfg.compile, device, t.probe.step_s, planned)
                t.probe = None
                if compiled[0]:
                    t.model = torch.compile(t.model)
            with writer.directory() as d:
                # the host copy is queued now and written by the writer during validation
                snap = snapshot(unwrap(t.model), t.opt)
                writer.submit(write_last, d, snap)
                # NaN weights or no step: there is nothing meaningful to validate
                val = (math.nan,) * 3 if trained.end_reason else t.validate(data)
                record = EpochRecord(
                    epoch=epoch + 1,
                    train_loss=trained.loss,
                    train_acc=trained.acc,
                    val_loss=val[0],
                    val_acc=val[1],
                    val_macro_f1=val[2],
                    epoch_s=time.perf_counter() - t0,
                    images_per_s=trained.seen / max(train_s, 1e-9),
                    lr=t.opt.param_groups[-1]["lr"],
                    stamp=stamp,
                    micro_batch=t.fit.micro,
                    compile="on" if compiled[0] else "off",
                    compile_reason=compiled[1],
                    restore_note=restore_note(note, t.fit),
                    end_reason=trained.end_reason,
                    error=trained.error,
                )
                if best.judge(record, cfg):
                    best_state = snap.model  # already on the host: no second copy
                history.append({k: getattr(record, k) for k in ("epoch", "val_acc", "val_loss")})
                writer.submit(write_meta, d, epoch + 1, list(history), best.state())
                writer.submit(write_best, d, snap, snap.model if best_state is None else best_state)
                writer.wait()  # the caller copies the directory in report(): it must be complete
                if faults:
                    inject.corrupt_checkpoint(faults, epoch + 1, bool(candidates), d)
                report(record.metrics(), d)
            if faults:
                inject.after_report(faults, epoch + 1, bool(candidates))
            if record.end_reason:
                return
    finally:
        writer.close()
