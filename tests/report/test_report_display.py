"""Report display bugs, checked on the computed data: category order and ticks, the Grad-CAM
sample, the page without its assets (issue #15 bugs 1-3; bug 4 is test_report.test_edge_...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.offline
from report_fixture import make_study

from study.report import build_report, hyperparameters
from study.report.__main__ import main

SETTINGS = {"metric": "val_acc", "mode": "max"}


def test_category_order() -> None:
    from study.report.categories import category_order, decode, label

    # numbers in numeric order, whether stored as numbers, as text or JSON-encoded (bug 1)
    assert category_order([1e-4, 1e-5, 0.0, 1e-4]) == [0.0, 1e-5, 1e-4]
    assert category_order(["0.0001", "1e-05", "0"]) == [0, 1e-5, 1e-4]
    assert category_order(["64", "32", "128"]) == [32, 64, 128]
    assert [label(v) for v in category_order([1e-4, 1e-5, 0.0])] == ["0", "1e-05", "0.0001"]
    # booleans False, True; missing values left out
    assert category_order([True, False, None, np.nan, pd.NA]) == [False, True]
    # mixed types (JSON-encoded by the runner): the declared choices' order, then the rest
    choices = ["none", "backbone", 1, 2]
    assert category_order(["2", '"none"', "1", '"backbone"'], choices) == ["none", "backbone", 1, 2]
    assert category_order(["b", 3, "a", 1]) == [1, 3, "a", "b"]
    assert (
        decode('"none"') == "none" and decode("relu") == "relu" and decode("[64, 64]") == "[64, 64]"
    )
    assert decode(np.int64(3)) == 3 and decode(pd.NA) is None and decode("null") is None


def test_axis_data_orders_categories_and_ticks() -> None:
    hps = {
        "l2": {"role": "nuisance", "kind": "categorical", "choices": [0.0, 1e-5, 1e-4]},
        "head_width_1": {"role": "scientific", "kind": "categorical", "choices": [32, 64, 128]},
        "extra_inception_3": {"role": "scientific", "kind": "int", "low": 0, "high": 1},
        "head_layers": {"role": "scientific", "kind": "int", "low": 0, "high": 2},
        "bn": {"role": "scientific", "kind": "categorical", "choices": [True, False]},
        "freeze": {"role": "scientific", "kind": "categorical", "choices": ["none", "backbone", 1]},
    }
    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "status": ["finished"] * 3,
            "val_acc_max": [0.9, 0.8, 0.7],
            # as the runner may store them: JSON text where a column mixes types
            "config/l2": ["0.0001", "1e-05", "0.0"],
            "config/head_width_1": [64, 32, 128],
            "config/extra_inception_3": [1, 0, 1],
            "config/head_layers": [0, 2, 1],
            "config/bn": [True, False, True],
            "config/freeze": ["1", '"none"', '"backbone"'],
        }
    )
    axes = {a["name"]: a for a in hyperparameters.axis_data(trials, hps, SETTINGS)}
    assert axes["l2"]["categories"] == ["0", "1e-05", "0.0001"]
    assert axes["l2"]["x"] == ["0.0001", "1e-05", "0"]  # best first, as labels
    assert axes["head_width_1"]["categories"] == ["32", "64", "128"]
    assert axes["bn"]["categories"] == ["False", "True"]
    assert axes["freeze"]["categories"] == ["none", "backbone", "1"]
    # a 0/1 switch is two ticks, not a continuous 0-1 axis; other ints have integer ticks
    assert axes["extra_inception_3"]["kind"] == "category"
    assert axes["extra_inception_3"]["categories"] == ["0", "1"]
    assert axes["head_layers"]["kind"] == "int" and axes["head_layers"]["ticks"] == [0, 1, 2]
    # head_layers=0 is best but cannot be widened below 0: no edge warning (bug 4)
    assert axes["head_layers"]["best"] == 0 and axes["head_layers"]["edge"] is None
    # the parallel coordinates draw those orders (codes follow the categories, not the text)
    dim = hyperparameters._encode(axes["l2"])
    assert dim["ticktext"] == ["0", "1e-05", "0.0001"] and dim["values"] == [2, 1, 0]
    assert hyperparameters._encode(axes["head_layers"])["tickvals"] == [0, 1, 2]
    panel = hyperparameters.axis_figure(list(axes.values()), "val acc").layout.xaxis
    assert list(panel.categoryarray) == ["0", "1e-05", "0.0001"]


def test_gradcam_rows_sample_across_characters(monkeypatch) -> None:
    import study.evaluation.inference as ev  # gradcam_rows and the grad_cam it calls live there
    from study.data import SplitArrays

    monkeypatch.setattr(ev, "grad_cam", lambda model, x, pred: np.zeros((len(x), 4, 4)))
    chars = ["aiko", "bob", "cleo", "dan", "eve", "fay"]
    # in path order every class starts with 20 images of "aiko" (bug 2)
    paths = [f"{c}/{e}/{c}_{e}_{i}.png" for e in ("joy", "sad") for c in chars for i in range(20)]
    labels = np.array([0 if "/joy/" in p else 1 for p in paths])
    arr = SplitArrays(np.zeros((len(paths), 3, 8, 8), np.uint8), labels, paths)
    probs = np.eye(2)[labels]
    rows = ev.gradcam_rows(None, "t1", arr, probs, ["joy", "sad"], 3, torch_cpu())
    assert rows["label"].value_counts().to_dict() == {"joy": 3, "sad": 3}
    for _, g in rows.groupby("label"):
        assert g["path"].str.split("/").str[0].nunique() == 3  # three characters per class
    again = ev.gradcam_rows(None, "t1", arr, probs, ["joy", "sad"], 3, torch_cpu())
    assert rows["path"].tolist() == again["path"].tolist()  # seeded
    other = ev.gradcam_rows(None, "t1", arr, probs, ["joy", "sad"], 3, torch_cpu(), seed=1)
    assert rows["path"].tolist() != other["path"].tolist()


def torch_cpu():
    import torch

    return torch.device("cpu")


def test_self_contained_page_and_missing_plotly_note(tmp_path: Path, capsys) -> None:
    d = make_study(tmp_path, statuses=["finished", "stopped"], tables=("trials",))
    page = build_report(str(d), str(tmp_path / "a")).read_text()
    # a page copied without assets/ says so instead of showing blank figures (bug 3)
    assert 'id="plotly-missing" hidden' in page and "if (!window.Plotly)" in page
    assert main([str(d), "--out", str(tmp_path / "b"), "--self-contained"]) == 0
    inline = (tmp_path / "b" / "index.html").read_text()
    assert not (tmp_path / "b" / "assets").exists() and "assets/plotly.min.js" not in inline
    assert plotly.offline.get_plotlyjs()[:2000] in inline
    capsys.readouterr()
