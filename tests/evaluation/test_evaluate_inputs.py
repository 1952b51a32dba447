"""`python -m study.evaluate` on bad inputs, and the one macro-F1 of the project (issue #12).

The study directory is the report's synthetic one (tests/report_fixture.py) plus what evaluate
reads of a trial: params.json and checkpoint_*/best.pt of a tiny model, saved as the trainable
saves it. No Ray study runs here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, face_png, tree_snapshot
from report_fixture import make_study

from study.evaluation import command as evaluate
from study.evaluation import inference
from study.models import create_model
from study.report import evaluated
from study.results import statistics

CLASSES = ["anger", "joy", "sadness"]
CONFIG = {"model": "vanilla_cnn", "width": 4, "depth": 2, "image_size": 32}


def add_checkpoint(study_dir: Path, trial_id: str) -> None:
    """What a trial leaves: params.json, and best.pt (a state dict) in its checkpoint folder."""
    torch.manual_seed(0)
    model = create_model("vanilla_cnn", len(CLASSES), width=4, depth=2)
    ckpt = study_dir / trial_id / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    torch.save(model.state_dict(), ckpt / "best.pt")
    (study_dir / trial_id / "params.json").write_text(json.dumps(CONFIG))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """study/ (checkpoints for every finished or stopped trial), bare/ (no checkpoint at all),
    empty/ (no study.json), src/ (happy, sad, foo: the issue's folders), broken/ (no image
    decodes)."""
    root = tmp_path_factory.mktemp("evaluate")
    study = make_study(root, "study", classes=CLASSES)
    trials = pd.read_parquet(study / "trials.parquet")
    for tid in trials.loc[trials["status"].isin(["finished", "stopped"]), "trial_id"]:
        add_checkpoint(study, tid)
    make_study(root, "bare", classes=CLASSES)
    (root / "empty").mkdir()
    for c, (folder, n) in enumerate({"happy": 3, "sad": 3, "foo": 2}.items()):
        for i in range(n):
            face_png(root / "src" / folder / f"{i}.png", seed=10 * c + i, size=40)
    for folder in ("happy", "sad"):
        (root / "broken" / folder).mkdir(parents=True)
        for i in range(2):
            (root / "broken" / folder / f"{i}.png").write_bytes(f"not a png {folder} {i}".encode())
    return root


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    code = evaluate.main(args)  # `python -m study.evaluate` exits with this code
    out, err = capsys.readouterr()
    return code, out, err


GOOD_MAP = "happy=joy,sad=sadness"
BAD_INPUTS = {
    # the issue's typo: a key that names no folder, with the folder it meant
    "map key no folder": (
        ["study", "src", "--label-map", "hapy=joy,sad=sadness"],
        ["--label-map", "hapy", "did you mean 'happy'", "foo, happy, sad"],
    ),
    "map value no class": (
        ["study", "src", "--label-map", "happy=joyy,sad=sadness"],
        ["--label-map", "joyy", "did you mean 'joy'", "anger, joy, sadness"],
    ),
    "map not pairs": (["study", "src", "--label-map", "happy"], ["--label-map", "'happy'"]),
    "map key twice": (
        ["study", "src", "--label-map", "happy=joy,happy=sadness"],
        ["--label-map", "'happy' twice"],
    ),
    "one class scored": (
        ["study", "src", "--label-map", "sad=sadness"],
        ["{root}/src", "1 class(es)", "sadness", "at least 2", "--label-map"],
    ),
    "top 0": (["study", "src", "--label-map", GOOD_MAP, "--top", "0"], ["--top 0", ">= 1"]),
    "top -1": (["study", "src", "--label-map", GOOD_MAP, "--top", "-1"], ["--top -1", ">= 1"]),
    "top not int": (["study", "src", "--top", "x"], ["--top", "'x'"]),
    "no checkpoints": (
        ["bare", "src", "--label-map", GOOD_MAP],
        ["{root}/bare", "no trial left a checkpoint"],
    ),
    "all images bad": (
        ["study", "broken", "--label-map", GOOD_MAP],
        ["{root}/broken", "none of the 4 images", "4 x not an image"],
    ),
    "no study.json": (["empty", "src"], ["{root}/empty/study.json"]),
    "no source": (["study", "missing", "--label-map", GOOD_MAP], ["{root}/missing"]),
}


@pytest.mark.parametrize(("args", "words"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_named_error_and_changes_nothing(root, capsys, args, words) -> None:
    """Exit code 2, one line `error: ...` naming the option or file, nothing written anywhere."""
    study, source, *rest = args
    before = tree_snapshot(root)
    code, out, err = run_main([str(root / study), "--source", str(root / source), *rest], capsys)
    assert code == 2, out + err
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word.format(root=root) in err
    assert tree_snapshot(root) == before


def test_the_issues_typo_through_the_real_cli(root) -> None:
    """As a user runs it: one line on stderr and exit code 2, no traceback, no score."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "study.evaluate",
            str(root / "study"),
            "--source",
            str(root / "src"),
            "--label-map",
            "hapy=joy,sad=sadness",
        ],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: --label-map hapy=joy") and r.stderr.count("\n") == 1


def test_left_out_folders_are_listed_with_their_image_counts(root, capsys) -> None:
    code, out, err = run_main(
        [str(root / "study"), "--source", str(root / "src"), "--label-map", GOOD_MAP], capsys
    )
    assert code == 0, err
    assert "6 images scored in 2 classes: joy (3), sadness (3)" in out
    assert "left out (not a class of the study, not in --label-map): foo (2 images)" in out
    assert out.splitlines()[-1].split()[1] == "6"


def test_same_file_under_two_classes_is_named_and_not_scored(root, tmp_path, capsys) -> None:
    src = tmp_path / "src"
    shutil.copytree(root / "src", src)
    shutil.copy(src / "happy" / "0.png", src / "sad" / "copy.png")
    code, out, err = run_main(
        [str(root / "study"), "--source", str(src), "--label-map", GOOD_MAP], capsys
    )
    assert code == 0, err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "happy/0.png" in warning[0] and "sad/copy.png" in warning[0]
    assert "left out of scoring" in warning[0]
    # 3 + 4 files, the two copies dropped: 5 scored, each once
    assert "5 images scored in 2 classes: joy (2), sadness (3)" in out


def test_a_duplicate_leaving_one_class_is_an_error(root, tmp_path, capsys) -> None:
    src = tmp_path / "src"
    for folder in ("happy", "sad"):
        face_png(src / folder / "same.png", seed=7, size=40)
    face_png(src / "sad" / "other.png", seed=8, size=40)
    code, out, err = run_main(
        [str(root / "study"), "--source", str(src), "--label-map", GOOD_MAP], capsys
    )
    assert code == 2 and "1 class(es)" in err and "at least 2" in err


# --- macro-F1: one definition, over all K classes, as scikit-learn with labels=range(K) ---

CASES = {
    "issue example": ([0, 0, 1, 1], [0, 0, 1, 2], 3),
    "class never seen": ([0, 0, 1, 1], [0, 0, 1, 1], 4),
    "class only predicted": ([0, 1, 0, 1], [2, 1, 0, 2], 3),
    "all wrong": ([0, 1, 2], [1, 2, 0], 3),
    "random": tuple(np.random.default_rng(0).integers(0, 5, (2, 60)).tolist()) + (7,),
}


@pytest.mark.parametrize(("truth", "pred", "k"), CASES.values(), ids=CASES.keys())
def test_macro_f1_is_sklearns_over_all_classes(truth, pred, k) -> None:
    sk = pytest.importorskip("sklearn.metrics")
    expected = sk.f1_score(truth, pred, labels=list(range(k)), average="macro", zero_division=0)
    assert statistics.macro_f1(np.array(truth), np.array(pred), k) == pytest.approx(expected, 1e-12)
    # the runner's test scoring (test_macro_f1) and the report's "macro avg" row agree
    probs = np.eye(k)[pred]
    names = [f"c{i}" for i in range(k)]
    assert inference.score(np.array(truth), probs, names)["test_macro_f1"] == pytest.approx(
        expected
    )
    counts, _ = evaluated.confusion(
        pd.Series([names[i] for i in truth]), pd.Series([names[i] for i in pred]), names
    )
    row = evaluated.per_class_scores(counts).loc["macro avg"]
    p, r, _, _ = sk.precision_recall_fscore_support(
        truth, pred, labels=list(range(k)), average="macro", zero_division=0
    )
    assert row[["precision", "recall", "f1"]].tolist() == pytest.approx([p, r, expected])


def test_macro_f1_of_the_issue_example_by_hand() -> None:
    """(1 + 2/3 + 0) / 3, not (1 + 2/3) / 2 = 0.833 (classes present in the truth only)."""
    assert statistics.macro_f1(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 2]), 3) == pytest.approx(
        5 / 9
    )


def test_out_of_range_classes_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"preds must be class indices in \[0, 2\), got 2"):
        statistics.confusion_counts(np.array([0, 1]), np.array([0, 2]), 2)
