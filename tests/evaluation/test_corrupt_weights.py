"""Damaged or missing weights are one line naming the file and what to do (issue #27, item 9):
a corrupt best.pt (study.load_best_model, python -m study.evaluate), a corrupt or missing
final_model/model.pt, weights that hold more than tensors. Weights load only with torch's
weights_only=True, and no message ever advises weights_only=False.

The study is the report's synthetic one with tiny checkpoints (as test_evaluate_inputs.py builds
them) and a final model; no Ray.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, face_png
from report_fixture import make_study
from test_evaluate_inputs import CLASSES, CONFIG, add_checkpoint

import study
from study.evaluation import command as evaluate
from study.evaluation.inference import load_final_model
from study.models import create_model
from study.results.errors import StudyFileError
from study.results.lookups import read_study, trials_with_checkpoints
from study.training.checkpoints import read_weights
from study.training.transfer import write_final_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """study/ (best.pt for every finished or stopped trial, a final model) and src/ (happy, sad)."""
    root = tmp_path_factory.mktemp("weights")
    sd = make_study(root, "study", classes=CLASSES)
    trials = pd.read_parquet(sd / "trials.parquet")
    for tid in trials.loc[trials["status"].isin(["finished", "stopped"]), "trial_id"]:
        add_checkpoint(sd, tid)
    buf = io.BytesIO()
    torch.save(create_model("vanilla_cnn", len(CLASSES), width=4, depth=2).state_dict(), buf)
    meta = {"trial_id": "t000", "config": CONFIG, "classes": CLASSES}
    write_final_model(str(sd), buf.getvalue(), meta)
    for c, folder in enumerate(("happy", "sad")):
        for i in range(2):
            face_png(root / "src" / folder / f"{i}.png", seed=10 * c + i, size=40)
    return root


@pytest.fixture
def root(base: Path, tmp_path: Path) -> Path:
    """A copy of `base` for one test to damage."""
    shutil.copytree(base, tmp_path / "r")
    return tmp_path / "r"


def best_pt(sd: Path) -> Path:
    """best.pt of the trial study.evaluate and load_best_model choose."""
    meta, trials, _, _ = read_study(str(sd))
    tid = trials_with_checkpoints(str(sd), trials, meta["settings"], 1)[0][0]
    return sd / tid / "checkpoint_000001" / "best.pt"


def full_text(exc: BaseException) -> str:
    """All a traceback of `exc` would show a notebook user, chained exceptions included."""
    return "".join(traceback.format_exception(exc))


def assert_one_named_line(text: str, path: Path) -> None:
    assert str(path) in text, text
    assert "\n" not in text.strip(), text
    assert "Traceback" not in text and "weights_only=False" not in text, text


def evaluate_cli(root: Path, capsys, *extra: str) -> tuple[int, str]:
    args = [str(root / "study"), "--source", str(root / "src")]
    code = evaluate.main([*args, "--label-map", "happy=joy,sad=sadness", *extra])
    return code, capsys.readouterr().err


DAMAGE = {
    "garbage": lambda p: p.write_bytes(b"not a checkpoint"),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
    "empty": lambda p: p.write_bytes(b""),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_corrupt_best_pt_is_named_by_load_best_model(root: Path, damage) -> None:
    path = best_pt(root / "study")
    damage(path)
    with pytest.raises(StudyFileError) as e:
        study.load_best_model(root / "study", device="cpu")
    assert_one_named_line(str(e.value), path)
    assert "delete the trial's checkpoint" in str(e.value)
    assert "weights_only=False" not in full_text(e.value)


def test_a_pickled_object_is_refused_and_never_advised_to_load_unsafely(tmp_path: Path) -> None:
    """torch's own message for it says to re-run torch.load with weights_only=False, which would
    run code from the file; ours names the file and the object instead."""
    path = tmp_path / "checkpoint_000001" / "best.pt"
    path.parent.mkdir()
    torch.save({"weights": np.zeros(3)}, path)
    with pytest.raises(StudyFileError) as e:
        read_weights(path)
    text = full_text(e.value)
    assert "weights_only" not in text and "can still be loaded" not in text, text
    assert_one_named_line(str(e.value), path)
    assert "numpy" in str(e.value) and "not loaded" in str(e.value)


def test_the_evaluate_command_names_a_corrupt_best_pt(root: Path, capsys) -> None:
    path = best_pt(root / "study")
    path.write_bytes(b"not a checkpoint")
    code, err = evaluate_cli(root, capsys, "--top", "1")
    assert code == 2 and err.startswith("error: ")
    assert_one_named_line(err, path)


def test_weights_of_another_model_are_named(root: Path) -> None:
    path = best_pt(root / "study")
    torch.save(create_model("vanilla_cnn", 3, width=8, depth=2).state_dict(), path)
    with pytest.raises(StudyFileError, match="do not fit the model") as e:
        study.load_best_model(root / "study", device="cpu")
    assert_one_named_line(str(e.value), path)


def test_a_corrupt_final_model_is_named(root: Path, capsys) -> None:
    path = root / "study" / "final_model" / "model.pt"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(StudyFileError) as e:
        load_final_model(str(root / "study"), len(CLASSES), CPU)
    assert_one_named_line(str(e.value), path)
    assert "delete it to use the best trials" in str(e.value)
    code, err = evaluate_cli(root, capsys)  # the final model is its default
    assert code == 2
    assert_one_named_line(err, path)


def test_a_missing_final_model_is_named_before_any_image_is_decoded(
    root: Path, capsys, monkeypatch
) -> None:
    path = root / "study" / "final_model" / "model.pt"
    path.unlink()

    def decode(*args, **kwargs):
        raise AssertionError("decoded the folder before checking the model")

    monkeypatch.setattr("study.evaluation.folder_source.decode_folder", decode)
    code, err = evaluate_cli(root, capsys)
    assert code == 2
    assert_one_named_line(err, path)
    assert "missing" in err
    with pytest.raises(StudyFileError, match="model.pt: missing"):
        load_final_model(str(root / "study"), len(CLASSES), CPU)


def test_the_evaluate_command_prints_one_line_and_no_traceback(root: Path) -> None:
    path = best_pt(root / "study")
    path.write_bytes(b"not a checkpoint")
    r = subprocess.run(
        [sys.executable, "-m", "study.evaluate", str(root / "study"), "--source"]
        + [str(root / "src"), "--label-map", "happy=joy,sad=sadness", "--top", "1"],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ")
    assert_one_named_line(r.stderr, path)
