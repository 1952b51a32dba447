"""Results as a data product: documented columns (docs/results.md from study.results.schema), files
that match them, study.load without Ray, and a writer whose cost per result does not grow.

The tables are written by the real ResultsWriter driven as Tune drives it (tests/
test_results_schema.py's `write_study`) and by the real evaluation helpers; the slow test reads
a real study (the session's `asha_study`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import REPO
from test_results_schema import SPACE, write_study

from study.data import SplitArrays
from study.evaluation.inference import prediction_rows
from study.results import schema, tables
from study.results.lookups import select_top
from study.results.trials import summarise_trial
from study.tuning.callbacks import ResultsWriter

CLASSES = ["anger", "joy", "sad"]


def test_docs_results_md_is_generated_from_the_declarations() -> None:
    """docs/results.md is `python -m study.results.schema --markdown`: regenerate it after a
    change."""
    committed = (REPO / "docs" / "results.md").read_text()
    assert committed == schema.markdown(), (
        "run: python -m study.results.schema --markdown > docs/results.md"
    )
    assert "docs/results.md" in (REPO / "README.md").read_text()  # linked from the README
    for table in schema.TABLES.values():  # every column of every table, with its type
        for col in table.columns:
            assert f"| `{col.name}` | {col.type} |" in committed


def _evaluation_tables(study_dir: Path) -> list[np.ndarray]:
    """predictions.parquet and gradcam.parquet as study run writes them (evaluate's rows)."""
    rng = np.random.default_rng(0)
    n, side = 6, 8
    arr = SplitArrays(
        images=rng.integers(0, 255, (n, 3, side, side), dtype=np.uint8),
        labels=np.arange(n) % 3,
        paths=[f"g{i}/{i}.png" for i in range(n)],
    )
    probs = rng.dirichlet(np.ones(3), n)
    tables.write_parquet(
        prediction_rows("t0_0", arr, probs, CLASSES), study_dir / schema.PREDICTIONS
    )
    cams = [rng.random((side, side)).astype(np.float32) for _ in range(2)]
    gradcam = pd.DataFrame(  # the layout of study.evaluation.inference.gradcam_rows: flat maps
        {
            "trial_id": "t0_0",
            "path": ["g0/0.png", "g1/1.png"],
            "label": ["anger", "joy"],
            "pred": ["anger", "sad"],
            "confidence": [0.9, 0.5],
            "image": [b"png0", b"png1"],
            "cam": [c.ravel().tolist() for c in cams],
            "cam_size": side,
        }
    )
    tables.write_parquet(gradcam, study_dir / schema.GRADCAM)
    return cams


@pytest.fixture
def written(tmp_path) -> tuple[Path, list[np.ndarray]]:
    space = tmp_path / "space.py"
    space.write_text(SPACE)
    sd = tmp_path / "s"
    points = [{"model": "googlenet", "freeze": 1}, {"model": "vanilla_cnn", "freeze": "none"}]
    write_study(space, sd, points)
    return sd, _evaluation_tables(sd)


def test_written_files_have_exactly_the_documented_columns_and_types(written) -> None:
    sd, _ = written
    for file in (schema.TRIALS, schema.EPOCHS, schema.PREDICTIONS, schema.GRADCAM):
        s = pq.read_schema(sd / file)
        assert tables.check_schema(s, file) == [], file
        assert s.metadata[b"schema_version"] == str(schema.SCHEMA_VERSION).encode()
    # the checker itself: an undeclared column or a wrong type is reported
    df = pd.read_parquet(sd / schema.EPOCHS)
    df.assign(extra=1, epoch=df["epoch"].astype(float)).to_parquet(sd / "x.parquet")
    problems = tables.check_schema(pq.read_schema(sd / "x.parquet"), schema.EPOCHS)
    assert any("column extra" in p for p in problems), problems
    assert any("epoch is double, expected int64" in p for p in problems), problems


def test_times_are_timestamps_and_maps_keep_their_shape(written) -> None:
    sd, cams = written
    epochs = pq.read_table(sd / schema.EPOCHS)
    assert str(epochs.schema.field("time").type) == "timestamp[us, tz=UTC]"
    gradcam = pq.read_table(sd / schema.GRADCAM)
    assert gradcam.column("cam").to_pylist()[0][3] == pytest.approx(cams[0][3].tolist())
    loaded = tables.read_table(sd, schema.GRADCAM)
    assert loaded["cam"].iloc[1].shape == (8, 8)  # no reshape needed
    np.testing.assert_allclose(loaded["cam"].iloc[1], cams[1])
    assert (loaded["study"] == "s").all()  # filled in from the folder by write_parquet
    assert (tables.read_table(sd, schema.PREDICTIONS)["study"] == "s").all()


LOAD_WITHOUT_RAY = """
import sys
sys.modules["ray"] = None  # any `import ray` fails
import study
s = study.load(sys.argv[1])
print(study.__version__, len(s.trials), len(s.epochs), s.epochs["time"].dtype, s.gradcam is None)
"""


def test_study_load_works_with_ray_blocked_and_merges_a_killed_drivers_logs(tmp_path) -> None:
    """A driver killed mid-study (no on_experiment_end): its epochs are only in the per-trial
    logs; study.load, read_table and a resumed writer still see every one, once."""
    sd = tmp_path / "k"
    writer = ResultsWriter(sd, dataset="toon", flush_every_s=3600)
    writer.setup()
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"model": "vanilla_cnn"}) for i in range(2)]
    for epoch in (1, 2, 3):
        for t in trials:
            writer.on_trial_result(0, [], t, _result(epoch))
    writer.on_trial_result(0, [], trials[0], _result(3, val_acc=0.9))  # a retry re-reports
    # killed here: no epochs.parquet yet, every row in epochs.parts/
    assert not (sd / schema.EPOCHS).exists() and (sd / schema.EPOCH_PARTS).is_dir()
    r = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_RAY, str(sd)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    import study

    assert r.stdout.split() == [study.__version__, "2", "6", "datetime64[us,", "UTC]", "True"]
    e = tables.read_table(sd, schema.EPOCHS)
    assert e.loc[(e.trial_id == "t0") & (e.epoch == 3), "val_acc"].tolist() == [0.9]
    resumed = ResultsWriter(sd, dataset="toon")  # as Tuner.restore unpickles it: empty
    resumed.setup()
    resumed.on_trial_result(0, [], trials[1], _result(4))
    resumed.on_experiment_end([])
    assert not (sd / schema.EPOCH_PARTS).exists()  # merged into epochs.parquet, logs gone
    final = pd.read_parquet(sd / schema.EPOCHS)
    assert len(final) == 7 and not final.duplicated(["trial_id", "epoch"]).any()


def _result(epoch: int, val_acc: float = 0.5) -> dict:
    return {
        "epoch": epoch, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": val_acc,
        "val_macro_f1": 0.4, "epoch_s": 0.1, "images_per_s": 10.0, "micro_batch": 32, "lr": 0.01,
    }  # fmt: skip


def test_a_result_appends_one_line_and_rewrites_no_table(tmp_path, monkeypatch) -> None:
    """O(1) per result: after a trial's first result (its row in trials.parquet), a result is
    one appended line; no Parquet file is rewritten until the trial ends or the flush period."""
    writes: list[str] = []
    real = tables.storage.write_bytes
    monkeypatch.setattr(
        tables.storage,
        "write_bytes",
        lambda path, data: writes.append(str(path)) or real(path, data),
    )
    writer = ResultsWriter(tmp_path / "s", dataset="toon", flush_every_s=3600)
    writer.setup()
    trial = SimpleNamespace(trial_id="t0", config={"model": "vanilla_cnn"})
    writer.on_trial_result(0, [], trial, _result(1))
    assert [Path(w).name for w in writes] == [schema.TRIALS]  # its row: the trial exists
    writes.clear()
    for epoch in range(2, 40):
        writer.on_trial_result(0, [], trial, _result(epoch))
    assert writes == []
    log = tmp_path / "s" / schema.EPOCH_PARTS / "t0.jsonl"
    assert len(log.read_text().splitlines()) == 39
    writer.on_trial_complete(0, [], trial)
    assert [Path(w).name for w in writes] == [schema.TRIALS]


def test_a_diverged_trial_summarises_without_numpy_warnings() -> None:
    epochs = pd.DataFrame(
        {
            "epoch": [1, 2],
            "val_acc": [np.nan, np.nan],
            "val_loss": [np.nan] * 2,
            "epoch_s": [1.0] * 2,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Mean of empty slice", "All-NaN slice encountered"
        row = summarise_trial("t", {"model": "m"}, epochs, {}, ("diverged", "nan"), "toon")
    assert np.isnan(row["val_acc_avg"]) and np.isnan(row["val_acc_max"]) and row["best_epoch"] == 0


@pytest.mark.study
def test_a_real_study_matches_the_docs_and_loads(asha_study) -> None:
    """All four tables of a real study (ASHA, test evaluation, Grad-CAM) match docs/results.md;
    study.load reads them and load_best_model gives the best trial's weights."""
    import torch

    import study

    for file in (schema.TRIALS, schema.EPOCHS, schema.PREDICTIONS, schema.GRADCAM):
        assert tables.check_schema(pq.read_schema(asha_study.dir / file), file) == [], file
    s = study.load(asha_study.dir)
    assert len(s.trials) == 8 and s.confirm is None and s.meta["name"] == "asha"
    assert s.gradcam["cam"].iloc[0].ndim == 2
    best = study.load_best_model(asha_study.dir, device="cpu")
    assert best.trial_id == select_top(s.trials, 1, s.meta["settings"])[0]  # the report's best
    with torch.no_grad():
        out = best.model(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, len(best.classes)) == (1, len(s.classes))
    assert json.loads((asha_study.dir / "study.json").read_text())["set"] == {}


def test_the_append_benchmark_prints_both_writers_per_result_cost(capsys) -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks.append_results import main as bench

    assert (
        bench(["--trials", "6", "--epochs", "4", "--concurrent", "3", "--rewrite-results", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "per-result cost, 6 trials x 4 epochs" in out and "load average" in out
    for row in ("append (now)", "rewrite (before)"):
        assert re.search(rf"{re.escape(row)}\s+\d+\s+[\d.]+", out), row
    assert "append: 24 epoch rows" in out
