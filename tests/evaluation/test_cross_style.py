"""`study.evaluate` on another style's folders: what it scored and left out, the majority-class
baseline, shared vs all classes competing, and the files it writes (issue #14, item 6).

The study is the report's synthetic one (tests/report_fixture.py) with tiny checkpoints and a
final model; no Ray study runs here."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import face_png
from report_fixture import make_study

from study.evaluation import command as evaluate
from study.evaluation.cross_style import scores
from study.models import create_model
from study.results.statistics import binomial_ci
from study.training.transfer import write_final_model

CLASSES = ["anger", "joy", "sadness"]
CONFIG = {"model": "vanilla_cnn", "width": 4, "depth": 2, "image_size": 32}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """study/ (checkpoints for finished/stopped trials and a final model), src/ with folders
    happy (4, as joy), sad (2, as sadness), foo (2, no class) and a file broken in happy."""
    root = tmp_path_factory.mktemp("cross")
    study = make_study(root, "study", classes=CLASSES)
    trials = pd.read_parquet(study / "trials.parquet")
    for i, tid in enumerate(trials.loc[trials["status"].isin(["finished", "stopped"]), "trial_id"]):
        torch.manual_seed(i)
        model = create_model("vanilla_cnn", len(CLASSES), width=4, depth=2)
        (study / tid / "checkpoint_000001").mkdir(parents=True)
        torch.save(model.state_dict(), study / tid / "checkpoint_000001" / "best.pt")
        (study / tid / "params.json").write_text(json.dumps(CONFIG))
    buf = io.BytesIO()
    torch.save(create_model("vanilla_cnn", len(CLASSES), width=4, depth=2).state_dict(), buf)
    meta = {"trial_id": "t000", "config": CONFIG, "classes": CLASSES, "trained_on": "train+val"}
    write_final_model(str(study), buf.getvalue(), meta)
    for c, (folder, n) in enumerate({"happy": 4, "sad": 2, "foo": 2}.items()):
        for i in range(n):
            face_png(root / "src" / folder / f"{i}.png", seed=10 * c + i, size=40)
    (root / "src" / "happy" / "bad.png").write_bytes(b"not a png")
    return root


def run(root: Path, capsys, *extra: str) -> tuple[str, Path]:
    out = root / "out"
    code = evaluate.main(
        [
            str(root / "study"),
            "--source",
            str(root / "src"),
            "--label-map",
            "happy=joy,sad=sadness",
            "--out",
            str(out),
            *extra,
        ]
    )
    stdout, err = capsys.readouterr()
    assert code == 0, err
    return stdout, out


def test_prints_the_baseline_and_what_it_left_out(root, capsys) -> None:
    out, files = run(root, capsys)
    assert "6 images scored in 2 classes: joy (4), sadness (2)" in out
    assert "majority-class baseline on the scored images: 0.667 (always 'joy')" in out
    folders = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.split()[:1] in (["foo"], ["happy"], ["sad"])
    }
    # folder, class, scored, unmapped, conflict, undecodable, left_out
    assert folders["foo"][1:] == ["0", "2", "0", "0", "2"]
    assert folders["happy"][1:] == ["joy", "4", "0", "0", "1", "1"]
    assert folders["sad"][1:] == ["sadness", "2", "0", "0", "0", "0"]
    assert "final (t000 refit)" in out  # the study's final model by default
    assert "confusion matrix" in out and "recall_shared" in out
    saved = json.loads((files / "scores.json").read_text())
    assert saved["baseline"] == {"class": "joy", "accuracy": pytest.approx(4 / 6)}
    assert {f["folder"]: f["left_out"] for f in saved["folders"]} == {
        "foo": 2,
        "happy": 1,
        "sad": 0,
    }
    table = pd.read_parquet(files / "scores.parquet")
    assert table["baseline"].tolist() == [pytest.approx(4 / 6)]
    assert {"acc_shared", "acc_all", "macro_f1_shared", "macro_f1_all"} <= set(table.columns)


def test_trials_ensemble_and_tta_are_scored_side_by_side(root, capsys) -> None:
    _, files = run(root, capsys, "--top", "2", "--ensemble", "2", "--tta", "hflip")
    names = pd.read_parquet(files / "scores.parquet")["model"].tolist()
    assert len(names) == 6 and "ensemble of 2" in names and "ensemble of 2 +hflip" in names
    assert not any(n.startswith("final") for n in names)  # --top names trials


def test_shared_and_all_classes_compete_differently() -> None:
    """Image 2 is joy; among the shared classes (anger, joy) the model says joy, but over all
    its classes it says sadness: right when only shared classes compete, wrong when all do."""
    labels = np.array([0, 0, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.3, 0.6]])
    m = scores(labels, probs, CLASSES)
    assert m["acc_shared"] == pytest.approx(1.0) and m["acc_all"] == pytest.approx(2 / 3)
    assert m["per_class"]["joy"] == {"recall_shared": 1.0, "recall_all": 0.0, "support": 1}
    assert m["predicted_outside_shared"] == pytest.approx(1 / 3)
    assert m["confusion"]["rows"] == ["anger", "joy"]
    assert m["confusion"]["counts"] == [[2, 0, 0], [0, 0, 1]]
    assert m["macro_f1_shared"] == pytest.approx(1.0)
    assert m["macro_f1_all"] == pytest.approx((1.0 + 0.0) / 2)
    # each accuracy with its exact interval: 3 of 3 and 2 of 3 (a bootstrap said 1.0-1.0)
    assert (m["acc_shared_ci_low"], m["acc_shared_ci_high"]) == binomial_ci(3, 3)
    assert (m["acc_all_ci_low"], m["acc_all_ci_high"]) == binomial_ci(2, 3)
    assert m["acc_shared_ci_low"] < 0.4
