"""trials.parquet's layout: typed config columns from the space's declared hyperparameters, JSON
for a categorical that mixes types, a `study` column, `schema_version` in every file's metadata.

The writer is driven as Tune drives it (a callback fed trials and results) with configs made by
the study's own searcher, without Ray workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pandas as pd
import pyarrow.parquet as pq
import pytest

from study.results.schema import EPOCHS, SCHEMA_VERSION, TRIALS
from study.results.tables import decode_json_columns, read_table
from study.results.trials import declared_columns
from study.spaces.loader import SpaceFunction, load_space
from study.tuning.callbacks import ResultsWriter
from study.tuning.searcher import StudySearch

MIXED = ["none", "backbone", 1, None]
SPACE = f"""
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="schema test")
def space(trial):
    model = trial.suggest_categorical("model", ["googlenet", "vanilla_cnn"])
    cfg = {{"model": model, "freeze": trial.suggest_categorical("freeze", {MIXED!r}),
           "head_dense": [64] * trial.suggest_int("head_layers", 0, 2)}}
    if model == "googlenet":  # a conditional int parameter and a branch-only constant
        cfg |= {{"extra_inception_3": trial.suggest_int("extra_inception_3", 0, 1),
                 "width_mult": 0.25}}
    else:
        cfg |= {{"depth": trial.suggest_int("depth", 3, 5), "width": 8}}
    return cfg
"""
CONSTANTS = {"max_epochs": 1, "image_size": 32, "metric": "val_acc", "mode": "max"}


@pytest.fixture
def space_file(tmp_path) -> Path:
    path = tmp_path / "schema_space.py"
    path.write_text(SPACE)
    return path


def write_study(
    space_file: Path, study_dir: Path, points: list[dict], seed: int = 0, **reported: Any
) -> None:
    """A study whose trials are `points`, written by the ResultsWriter as Tune would drive it;
    `reported`: more keys of each trial's one report."""
    fn = SpaceFunction(str(space_file))
    searcher = StudySearch(
        space=fn,
        metric="val_acc",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=seed),
        points_to_evaluate=points,
        constants=CONSTANTS,
        study_seed=seed,
    )
    writer = ResultsWriter(
        study_dir, dataset="toon", columns=declared_columns(fn, fn.space.settings, CONSTANTS)
    )
    writer.setup()
    for i in range(len(points)):
        trial = SimpleNamespace(trial_id=f"t{seed}_{i}", config=searcher.suggest(f"t{seed}_{i}"))
        result = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0}
        result |= {"val_acc": 0.5, "val_macro_f1": 0.4, "epoch_s": 0.1, "images_per_s": 10.0}
        writer.on_trial_result(0, [], trial, result | {"end_reason": "max_epochs"} | reported)
        writer.on_trial_complete(0, [], trial)
    writer.on_experiment_end([])


def test_mixed_categorical_round_trips_losslessly(space_file, tmp_path) -> None:
    points = [{"model": "vanilla_cnn", "freeze": v} for v in MIXED]
    write_study(space_file, tmp_path / "s", points)
    trials = read_table(tmp_path / "s", TRIALS)
    # stored as JSON text: '"none"', '1' and 'null' stay apart
    assert trials["config/freeze"].tolist() == [json.dumps(v) for v in MIXED]
    assert pq.read_schema(tmp_path / "s" / TRIALS).field("config/freeze").metadata == {
        b"encoding": b"json"
    }
    decoded = decode_json_columns(trials)["config/freeze"].tolist()
    assert [json.dumps(v) for v in decoded] == [json.dumps(v) for v in MIXED]  # 1 stays an int
    assert [s["freeze"] for s in decoded_suggested(trials)] == MIXED


def decoded_suggested(trials: pd.DataFrame) -> list[dict]:
    return decode_json_columns(trials)["config/suggested"].tolist()


def test_schema_does_not_depend_on_which_trials_ran(space_file, tmp_path) -> None:
    """Two studies of one space, on disjoint branches and values, with other seeds."""
    googlenet = [{"model": "googlenet", "freeze": 1, "head_layers": 2}]
    cnn = [{"model": "vanilla_cnn", "freeze": "none"}, {"model": "vanilla_cnn", "freeze": None}]
    write_study(space_file, tmp_path / "a", googlenet, seed=1)
    write_study(space_file, tmp_path / "b", cnn, seed=2)
    for table in (TRIALS, EPOCHS):
        a, b = pq.read_schema(tmp_path / "a" / table), pq.read_schema(tmp_path / "b" / table)
        assert a.equals(b), f"{table}:\n{a}\n!=\n{b}"
        for schema in (a, b):
            assert schema.metadata[b"schema_version"] == str(SCHEMA_VERSION).encode()
    trials = read_table(tmp_path / "a", TRIALS)
    assert (trials["study"] == "a").all()
    assert (read_table(tmp_path / "b", EPOCHS)["study"] == "b").all()


def test_absent_int_parameter_stays_int64(space_file, tmp_path) -> None:
    points = [{"model": "googlenet", "extra_inception_3": 1}, {"model": "vanilla_cnn"}]
    write_study(space_file, tmp_path / "s", points)
    trials = read_table(tmp_path / "s", TRIALS)
    for col in ("config/extra_inception_3", "config/depth", "config/head_layers"):
        assert str(trials[col].dtype) == "Int64", col
    assert trials["config/extra_inception_3"].isna().tolist() == [False, True]
    # declared, never sampled here: still a column of its type
    write_study(space_file, tmp_path / "cnn", [{"model": "vanilla_cnn"}])
    assert str(read_table(tmp_path / "cnn", TRIALS)["config/extra_inception_3"].dtype) == "Int64"


def test_a_resumed_writer_keeps_the_rows_as_they_were(space_file, tmp_path) -> None:
    """A restored writer starts from the file: JSON values are not encoded twice, types stay."""
    points = [{"model": "googlenet", "freeze": v} for v in MIXED]
    write_study(space_file, tmp_path / "s", points)
    before = pq.read_table(tmp_path / "s" / TRIALS)
    fn = SpaceFunction(str(space_file))
    columns = declared_columns(fn, fn.space.settings, CONSTANTS)
    writer = ResultsWriter(tmp_path / "s", dataset="toon", columns=columns)
    writer.setup()
    writer.flush()
    assert pq.read_table(tmp_path / "s" / TRIALS).equals(before)


def test_shipped_mixed_space_declares_a_json_column() -> None:
    fn = SpaceFunction("mobilenet_manga")
    columns = declared_columns(fn, load_space("mobilenet_manga").settings, CONSTANTS)
    assert columns["config/freeze"] == "json"
    assert columns["config/head_width_1"] == "Int64"  # conditional (head_layers = 2) and typed


def test_the_report_reads_a_written_study(space_file, tmp_path) -> None:
    """Nullable columns hold pd.NA where a trial lacks a parameter; the report skips those as it
    skips NaN (it once called float(pd.NA) on them)."""
    from study.report import build_report
    from study.spaces.cover import describe_hyperparameters

    points = [{"model": m, "freeze": f} for m in ("googlenet", "vanilla_cnn") for f in MIXED]
    write_study(space_file, tmp_path / "s", points)
    meta = {"name": "s", "hyperparameters": describe_hyperparameters(load_space(str(space_file)))}
    (tmp_path / "s" / "study.json").write_text(json.dumps(meta))
    page = Path(build_report(str(tmp_path / "s"), str(tmp_path / "report"))).read_text()
    assert "extra_inception_3" in page and "freeze" in page


def test_a_report_of_trials_that_counted_their_gflops_imports_no_torch(space_file, tmp_path):
    """Each trial reports its model's GFLOPs (counted in its worker): the report shows them and
    its process imports no torch (counting there imported torch and torch._dynamo, about 6
    CPU-seconds of a report's 10 in a fresh process)."""
    from study.spaces.cover import describe_hyperparameters

    points = [{"model": "googlenet"}, {"model": "vanilla_cnn"}]
    write_study(space_file, tmp_path / "s", points, gflops=0.0123)
    assert read_table(tmp_path / "s", TRIALS)["gflops"].tolist() == [0.0123] * 2
    meta = {"name": "s", "hyperparameters": describe_hyperparameters(load_space(str(space_file)))}
    (tmp_path / "s" / "study.json").write_text(json.dumps(meta))
    code = (
        "import sys; from study.report import build_report; "
        f"print(build_report({str(tmp_path / 's')!r}, {str(tmp_path / 'report')!r})); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    page, torch_modules = out.stdout.strip().splitlines()[-2:]
    assert torch_modules == "[]", torch_modules[-2000:]
    assert "0.0123" in Path(page).read_text()
