"""Small-data checks after tuning (issue #14): confirmation seeds, CV folds, refit, ensemble, TTA.

One real smoke study through the CLI with every option (tiny toon, 32 px, vanilla CNN width 8,
2 epochs) is shared by the tests that read its files; the rest are pure functions.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import ray
import torch
from conftest import study_cli

from study.data import SplitArrays, open_dataset, prepare
from study.data.folds import fold_ids
from study.evaluation import confirm
from study.evaluation.confirm_jobs import Job
from study.evaluation.inference import probabilities
from study.models import create_model
from study.results import confirmed
from study.results.schema import CONFIRM
from study.run import __main__ as run
from study.training.transfer import FINAL_DIR, FINAL_JSON, FINAL_WEIGHTS
from study.tuning import trial_data


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    prepare("toon", source="tiny", data_dir=d, seed=0)
    return d


CV_SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="cv tuning", max_epochs=2, grace_period=1,
                         num_samples=2, image_size=32, sampler="random", cv_folds=2, top_k=1)
def space(trial):
    return {"model": "vanilla_cnn", "width": 8, "depth": 2, "batch_norm": True, "head_dense": [],
            "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True), "batch_size": 32}
"""


@pytest.fixture(scope="module")
def study(tiny, tmp_path_factory, shared_ray):
    """`--smoke-test` with --confirm-seeds 2 --confirm-folds 2 --refit --ensemble 2 --tta hflip,
    on a space that tunes on the mean of 2 folds (SpaceSettings.cv_folds): one study for all."""
    tmp = tmp_path_factory.mktemp("confirm")
    (tmp / "cv_space.py").write_text(CV_SPACE)
    r = study_cli(
        "--space",
        str(tmp / "cv_space.py"),
        "--smoke-test",
        "--data-dir",
        str(tiny),
        "--storage",
        str(tmp / "s"),
        "--name",
        "c",
        "--reports",
        str(tmp / "r"),
        "--confirm-seeds",
        "2",
        "--confirm-folds",
        "2",
        "--refit",
        "--ensemble",
        "2",
        "--tta",
        "hflip",
        env={**os.environ, **shared_ray},  # the test process's Ray head: no Ray start of its own
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sd = tmp / "s" / "c"
    return {
        "dir": sd,
        "report": tmp / "r" / "c" / "index.html",
        "stdout": r.stdout,
        "trials": pd.read_parquet(sd / "trials.parquet"),
        "confirm": pd.read_parquet(sd / CONFIRM),
        "counts": open_dataset(tiny, "toon").manifest["counts"],
    }


def _top(study) -> str:
    return study["confirm"].query("kind == 'tuning'")["trial_id"].iloc[0]


def test_confirm_seeds_rows_and_report(study) -> None:
    df, trials = study["confirm"], study["trials"]
    top = _top(study)
    seeds = df[(df["kind"] == "seed") & (df["trial_id"] == top)]
    assert len(seeds) == 2
    assert seeds["val_acc"].notna().all() and seeds["test_acc"].notna().all()
    own_seed = int(trials.set_index("trial_id").loc[top, "seed"])
    assert seeds["seed"].nunique() == 2 and own_seed not in set(seeds["seed"])
    # retrained to the epoch its trial kept (best validation accuracy of its epochs)
    epochs = pd.read_parquet(study["dir"] / "epochs.parquet").query("trial_id == @top")
    assert set(seeds["epochs"]) == {int(epochs.loc[epochs["val_acc"].idxmax(), "epoch"])}
    assert {"trial_id", "seed", "val_acc", "test_acc", "epochs"} <= set(df.columns)
    html = study["report"].read_text()
    assert "Confirmed results" in html and "2 seeds" in html
    mean = seeds["val_acc"].mean()
    assert f"{mean:.3f} ± {seeds['val_acc'].std(ddof=1):.3f}" in html
    out = study["stdout"]  # the final table, by the confirmed mean, comes after the leaderboard
    assert out.index("confirmed ranking") > out.index("leaderboard (by")


def test_confirm_folds_cover_train_and_val(study) -> None:
    folds = study["confirm"].query("kind == 'fold'")
    assert sorted(folds["fold"]) == [0, 1]
    pooled = study["counts"]["train"] + study["counts"]["val"]
    assert (folds["n_train"] + folds["n_val"] == pooled).all()
    assert folds["n_val"].sum() == pooled  # every image held out exactly once
    assert folds["test_acc"].notna().all()


def test_refit_writes_the_final_model(study) -> None:
    df = study["confirm"]
    refit = df[df["kind"] == "refit"].iloc[0]
    assert refit["n_train"] == study["counts"]["train"] + study["counts"]["val"]
    assert np.isnan(refit["val_acc"]) and np.isfinite(refit["test_acc"])
    meta = json.loads((study["dir"] / FINAL_DIR / FINAL_JSON).read_text())
    assert meta["trial_id"] == refit["trial_id"] and meta["trained_on"] == "train+val"
    state = torch.load(study["dir"] / FINAL_DIR / FINAL_WEIGHTS, weights_only=True)
    model = create_model(meta["config"]["model"], len(meta["classes"]), **_options(meta["config"]))
    model.load_state_dict(state)


def _options(config: dict) -> dict:
    from study.training.config import TrainConfig

    return TrainConfig.from_config(config).model_options


def test_ensemble_and_tta_rows(study) -> None:
    df = study["confirm"]
    ens = df[df["kind"] == "ensemble"]
    assert len(ens) == 1 and len(ens["trial_id"].iloc[0].split("+")) == 2
    assert set(ens["trial_id"].iloc[0].split("+")) == set(study["trials"]["trial_id"])
    scored = df[df["kind"].isin(["tuning", "ensemble", "seed", "fold", "refit"])]
    assert scored["test_acc_tta"].notna().all()  # --tta hflip: next to every test score


def test_cv_folds_tuning_reports_the_fold_mean(study, tiny) -> None:
    """Each trial trained 2 fold models in lockstep (both in its checkpoint) and reported their
    mean: re-scoring the last checkpoint's fold models on their held-out folds gives the stored
    validation accuracy of that epoch."""
    from study.data import load_split
    from study.data.store import concat, subset
    from study.training.config import TrainConfig

    sd = study["dir"]
    ds = open_dataset(tiny, "toon")
    pool = concat(load_split(ds, "train", 32), load_split(ds, "val", 32))
    folds = fold_ids(trial_data.pooled_meta(ds), ds.manifest["split_rule"], 2, seed=0)
    epochs = pd.read_parquet(sd / "epochs.parquet")
    for tid in study["trials"]["trial_id"]:
        ckpt = sorted((sd / tid).glob("checkpoint_*"))[-1]
        state = torch.load(ckpt / "cv.pt", weights_only=True)
        cfg = TrainConfig.from_config(json.loads((sd / tid / "params.json").read_text()))
        accs = []
        for f, (weights, _) in enumerate(state["folds"]):
            model = create_model(cfg.model, 7, **cfg.model_options)
            model.load_state_dict(weights)
            held = subset(pool, np.flatnonzero(folds == f))
            probs = probabilities(model, held, torch.device("cpu"))
            accs.append(float((probs.argmax(1) == held.labels).mean()))
        row = epochs[(epochs["trial_id"] == tid) & (epochs["epoch"] == state["epoch"])]
        assert len(accs) == 2 and row["val_acc"].iloc[0] == pytest.approx(np.mean(accs))
    tuning = study["confirm"].query("kind == 'tuning'")
    assert tuning["n_val"].eq(0).all()  # its checkpoint saw part of val: not scored there


def test_ranking_uses_the_confirmed_mean_not_the_tuning_run() -> None:
    rows = [
        {"kind": "tuning", "trial_id": "a", "val_acc": 0.9},
        {"kind": "tuning", "trial_id": "b", "val_acc": 0.5},
        *(
            {"kind": "seed", "trial_id": "a", "val_acc": v, "seed": i}
            for i, v in enumerate([0.3, 0.4])
        ),
        *(
            {"kind": "seed", "trial_id": "b", "val_acc": v, "seed": i}
            for i, v in enumerate([0.6, 0.5])
        ),
    ]
    df = confirmed.table(rows)
    assert confirmed.ranking(df) == ["b", "a"]
    s = confirmed.summary(df).set_index("trial_id")
    assert s.loc["b", "val_mean"] == pytest.approx(0.55)
    assert s.loc["b", "val_sd"] == pytest.approx(np.std([0.6, 0.5], ddof=1))
    lo, hi = s.loc["b", ["val_ci_low", "val_ci_high"]]
    assert 0 <= lo < 0.55 < hi <= 1  # a t-interval from 2 runs, clipped to [0, 1]


def test_a_failed_retraining_is_a_row_not_a_lost_study(monkeypatch) -> None:
    def get(ref):
        if ref == "lost":
            raise ray.exceptions.WorkerCrashedError()
        return {"kind": "seed", "trial_id": "a", "val_acc": 0.5}

    monkeypatch.setattr(ray, "get", get)
    jobs = [Job("seed", "a", {"model": "m", "seed": s}, 3) for s in (1, 2)]
    ok, lost = confirm.gather(["fine", "lost"], jobs)
    assert ok["val_acc"] == 0.5
    assert lost["seed"] == 2 and lost["epochs"] == 3 and "worker died" in lost["error"]
    df = confirmed.table([ok, lost])
    assert confirmed.summary(df).loc[0, "failed"] == 1


def test_new_seeds_are_deterministic_and_new() -> None:
    seeds = [confirm.new_seed(7, i) for i in range(5)]
    assert seeds == [confirm.new_seed(7, i) for i in range(5)]
    assert len(set(seeds)) == 5 and 7 not in seeds


def test_folds_respect_the_split_rule() -> None:
    rng = np.random.default_rng(0)
    n = 120
    meta = pd.DataFrame(
        {
            "label": rng.integers(0, 3, n).astype(str),
            "group": np.repeat([f"g{i}" for i in range(6)], n // 6),
            "sha256": [f"h{i}" for i in range(n)],
        }
    )
    meta.loc[5, "sha256"] = meta.loc[70, "sha256"]  # one image twice: one fold for both
    ids = fold_ids(meta, "stratified", 3, seed=0)
    assert set(ids) == {0, 1, 2} and ids[5] == ids[70]
    for k in range(3):  # stratified: each class in each fold near its share
        share = meta["label"][ids == k].value_counts(normalize=True)
        assert (abs(share - meta["label"].value_counts(normalize=True)) < 0.15).all()
    ids = fold_ids(meta, "by-group", 3, seed=0)
    assert (meta.assign(f=ids).groupby("group")["f"].nunique() == 1).all()  # whole characters
    # the duplicate ties g0 and g3 together (as the splits do): 5 units, not 6
    match = "--confirm-folds 6: train\\+val has only 5 separable characters"
    with pytest.raises(ValueError, match=match):
        fold_ids(meta, "by-group", 6, seed=0, what="--confirm-folds")


def test_tta_hflip_averages_the_mirror_image() -> None:
    torch.manual_seed(0)
    model = create_model("vanilla_cnn", 3, width=8, depth=2).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    arr = SplitArrays(images, np.zeros(4, np.int64), [""] * 4)
    mirror = SplitArrays(np.ascontiguousarray(images[..., ::-1]), arr.labels, arr.paths)
    device = torch.device("cpu")
    plain, flipped = probabilities(model, arr, device), probabilities(model, mirror, device)
    assert not np.allclose(plain, flipped)
    tta = probabilities(model, arr, device, "hflip")
    assert np.allclose(tta, (plain + flipped) / 2, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--confirm-folds", "500"], "--confirm-folds 500: train+val has only"),
        (["--confirm-folds", "1"], "--confirm-folds 1: expected an integer >= 2"),
        (["--ensemble", "1"], "--ensemble 1: an ensemble needs at least 2"),
        (["--confirm-seeds", "-1"], "--confirm-seeds -1"),
        (["--init-from", "/no/such/study"], "init_from '/no/such/study': no study at"),
    ],
)
def test_bad_small_data_options_fail_before_ray(tiny, tmp_path, capsys, args, words) -> None:
    rc = run.main(
        [
            "--space",
            "demo",
            "--smoke-test",
            "--data-dir",
            str(tiny),
            "--storage",
            str(tmp_path / "s"),
            *args,
        ]
    )
    assert rc == 2
    assert words in capsys.readouterr().err
    assert not ray.is_initialized() and not (tmp_path / "s").exists()
