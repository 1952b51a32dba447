"""The study runner through its real CLI: fail-fast checks, spaces, and real (small) Ray studies."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray
from conftest import study_cli

import search_spaces
from study.data import prepare
from study.models import create_model
from study.results.schema import EPOCH_COLUMNS as RESULT_EPOCH_COLUMNS
from study.run import __main__ as run
from study.run import overrides
from study.run.preflight import check_no_override
from study.spaces.cover import cover_space
from study.spaces.loader import SpaceFunction, list_spaces, load_space
from study.spaces.settings import stopped_early
from study.training.config import TrainConfig

SPACES = list_spaces()  # every shipped space: a new file is tested without editing this one
TRIAL_COLUMNS = [
    "trial_id",
    "status",
    "epochs",
    "val_acc_avg",
    "val_acc_max",
    "val_acc_last",
    "test_acc",
    "test_macro_f1",
    "params",
    "wall_s",
    "node",
    "device",
]
EPOCH_COLUMNS = [c for c in RESULT_EPOCH_COLUMNS if c not in ("lr", "time")]


def test_list_names_every_space_file_and_no_helper(capsys) -> None:
    assert run.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    files = Path(search_spaces.__file__).parent.glob("*.py")
    # one line per space file, with its data set; helper modules (_axes.py, ...) are not spaces
    assert sorted(p.stem for p in files if not p.stem.startswith("_")) == SPACES
    assert [line.split()[:2] for line in lines] == [
        [name, f"[{load_space(name).settings.dataset}]"] for name in SPACES
    ]


@pytest.mark.parametrize("name", SPACES)
def test_no_shipped_space_overrides_a_study_setting(name) -> None:
    """Every config each space can return (each categorical branch) leaves the study's settings
    (max_epochs, image_size, metric, mode, num_threads) to the study."""
    space = load_space(name)
    cover = cover_space(space.fn, space.settings)
    for params, cfg in zip(cover.params, cover.configs, strict=True):
        check_no_override(cfg, name, params)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--space", "nope"], "unknown space 'nope'"),
        (["--space", "demo", "--num-samples", "0"], "--num-samples 0"),
        (["--space", "demo", "--cpus-per-trial", "512"], "--cpus-per-trial 512"),
        (["--space", "demo", "--gpus-per-trial", "1"], "--gpus-per-trial 1"),
        (["--space", "demo", "--resume"], "--resume needs --name"),
        (["--space", "googlenet_manga"], "python -m study.data prepare manga --source"),
    ],
)
def test_bad_input_fails_before_ray_starts(args, words, tmp_path, capsys) -> None:
    if "--gpus-per-trial" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    rc = run.main([*args, "--data-dir", str(tmp_path), "--storage", str(tmp_path / "s")])
    assert rc == 2
    assert words in capsys.readouterr().err
    assert not ray.is_initialized()
    assert not (tmp_path / "s").exists()


def test_existing_study_is_not_overwritten(toon_dir, tmp_path, capsys) -> None:
    (tmp_path / "s" / "taken").mkdir(parents=True)
    (tmp_path / "s" / "taken" / "study.json").write_text("{}")  # a study (an empty folder is not)
    rc = run.main(
        [
            "--space",
            "demo",
            "--name",
            "taken",
            "--data-dir",
            str(toon_dir),
            "--storage",
            str(tmp_path / "s"),
        ]
    )
    assert rc == 2 and "--resume --name taken" in capsys.readouterr().err


@pytest.mark.parametrize("name", SPACES)
def test_every_config_a_space_produces_builds_a_model(name) -> None:
    space = load_space(name)
    if getattr(space.module, "NEEDS_INIT_FROM", None):
        pytest.skip(
            "its network is its --init-from source's: tests/training/test_transfer.py builds it"
        )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    grid = getattr(space.module, "GRID", None)
    fixed = [dict(p) for p in space.settings.starting_points]
    fixed += [{"variant": v} for v in (grid or {}).get("variant", [])]
    for p in fixed:
        study.enqueue_trial(p)
    for _ in range(len(fixed) + 4):
        trial = study.ask()
        cfg = SpaceFunction(name, {"pretrained": False})(trial)  # never download in tests
        tc = TrainConfig.from_config({**cfg, "seed": 0})
        model = create_model(tc.model, 7, **tc.model_options)
        assert sum(p.numel() for p in model.parameters()) > 0
        study.tell(trial, 0.0)
    # the starting points really are the values the first trials received
    for t, p in zip(study.trials, fixed, strict=False):
        assert {k: t.params[k] for k in p} == p


def test_smoke_test_end_to_end(tmp_path) -> None:
    """`--smoke-test` through the real CLI: files, columns, every trial, test split read last."""
    # a data set of its own: the cache files' times below must be this study's alone
    toon_dir = tmp_path / "data"
    prepare("toon", source="tiny", data_dir=toon_dir, seed=0)
    r = study_cli(
        "--space",
        "demo",
        "--smoke-test",
        "--data-dir",
        str(toon_dir),
        "--storage",
        str(tmp_path / "s"),
        "--name",
        "smoke",
        "--reports",
        str(tmp_path / "r"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sd = tmp_path / "s" / "smoke"
    trials = pd.read_parquet(sd / "trials.parquet")
    epochs = pd.read_parquet(sd / "epochs.parquet")
    preds = pd.read_parquet(sd / "predictions.parquet")
    assert set(TRIAL_COLUMNS) <= set(trials.columns)
    assert set(EPOCH_COLUMNS) <= set(epochs.columns)
    assert {"trial_id", "path", "label", "pred", "prob_joy"} <= set(preds.columns)
    assert any(c.startswith("config/") for c in trials.columns)
    assert len(trials) == 2 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"finished", "stopped"}
    per_trial = trials.set_index("trial_id")["epochs"]
    assert epochs.groupby("trial_id").size().to_dict() == per_trial.to_dict()
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert trials["test_acc"].notna().sum() == 1  # smoke: top_k = 1
    meta = json.loads((sd / "study.json").read_text())
    assert meta["seed"] == 0 and meta["dataset"]["name"] == "toon" and meta["finished"]
    assert "leaderboard" in r.stdout
    # the test split was decoded only after every trial's last epoch
    cache = toon_dir / "toon" / "cache"
    test_npy = next(cache.glob("*-32px-test.npy"))
    assert test_npy.stat().st_mtime > epochs["time"].max().timestamp()  # a UTC timestamp
    assert next(cache.glob("*-32px-train.npy")).stat().st_mtime < epochs["time"].min().timestamp()


def test_asha_stops_weak_trials_early(asha_study) -> None:
    trials, epochs = asha_study.trials, asha_study.epochs
    assert len(trials) == 8
    stopped = trials[trials["status"] == "stopped"]
    assert len(stopped) >= 1, trials[["trial_id", "status", "epochs"]]
    assert (stopped["epochs"] < 4).all()
    assert stopped["status_reason"].str.startswith(stopped_early()).all()
    assert (epochs.groupby("trial_id")["epoch"].max() < 4).any()
    finished = trials[trials["status"] == "finished"]
    assert (finished["epochs"] == 4).all() and len(finished) >= 1


def test_prefetched_batches_match_direct_reads() -> None:
    """The CUDA prefetch path yields exactly the batches the in-line path does (checked on CPU by
    forcing the threaded branch with a fake device type)."""
    import numpy as np
    import torch

    from study.data import SplitArrays
    from study.training.feed import batches, prefetched, to_device

    rng = np.random.default_rng(0)
    arr = SplitArrays(
        rng.integers(0, 255, (50, 3, 8, 8), dtype=np.uint8),
        rng.integers(0, 7, 50),
        [str(i) for i in range(50)],
    )
    order = batches(50, 16, torch.Generator().manual_seed(0))
    direct = [to_device(arr, i, torch.device("cpu")) for i in order]

    class FakeCuda:  # takes the threaded branch; to_device then copies to "cpu"
        type = "cuda"

    import study.training.feed as tr

    real = tr.to_device
    tr.to_device = lambda a, i, d: real(a, i, torch.device("cpu"))
    try:
        threaded = [(x, y) for _, x, y in prefetched(arr, order, FakeCuda())]
    finally:
        tr.to_device = real
    assert len(threaded) == len(direct) == 4
    for (x1, y1), (x2, y2) in zip(direct, threaded, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_max_epochs_flag_pulls_the_first_rung_down() -> None:
    a = run.parse_args(["--space", "googlenet_manga", "--max-epochs", "2", "--num-samples", "3"])
    settings, constants, _ = overrides.resolve(a, load_space("googlenet_manga"))
    assert (settings.max_epochs, settings.grace_period, settings.num_samples) == (2, 2, 3)
    assert constants["max_epochs"] == 2


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"metric": "val_acc", "mode": "max"}, ["acc", "loss"]),
        ({"metric": "val_loss", "mode": "min"}, ["loss", "acc"]),
    ],
)
def test_test_split_goes_to_the_best_by_the_study_metric(settings, expected) -> None:
    """select_top ranks as the report does: by val loss for a val_loss/min study (it once sorted
    max val acc ascending there, sending the least accurate trials to the test split)."""
    from study.results.lookups import select_top

    trials = pd.DataFrame(
        {
            "trial_id": ["acc", "loss", "worst", "broken", "live"],
            "status": ["finished", "stopped", "finished", "errored", "running"],
            "val_acc_max": [0.9, 0.8, 0.2, 0.99, 0.95],
            "val_acc_avg": [0.7, 0.6, 0.1, 0.5, 0.5],
            "val_loss_last": [0.5, 0.3, 2.0, 0.1, 0.05],
        }
    )
    assert select_top(trials, 2, settings) == expected


def test_evaluate_cli_on_the_studys_own_test_images_matches_the_runner(
    asha_study, toon_dir, tmp_path, capsys
) -> None:
    """`python -m study.evaluate STUDY --source DIR` on a class-folder copy of the study's test
    split (the same bytes) reproduces the test accuracy the runner stored for the best trial."""
    from study.data import open_dataset
    from study.evaluation.command import main

    t = open_dataset(toon_dir, "toon").read_images(["image", "label"], "test").to_pylist()
    for i, row in enumerate(t):
        (tmp_path / row["label"]).mkdir(exist_ok=True)
        (tmp_path / row["label"] / f"{i}.png").write_bytes(row["image"])
    assert main([str(asha_study.dir), "--source", str(tmp_path), "--top", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    tid, images, acc = out[-1].split()[:3]
    stored = asha_study.trials.set_index("trial_id").loc[tid, "test_acc"]
    assert int(images) == len(t) and pd.notna(stored)
    assert float(acc) == pytest.approx(stored, abs=5e-4)  # printed with 3 decimals
