"""The study directory's tables, declared once: every column's name, type, meaning and split.

The writers cast to these declarations (`study.results.tables.write_parquet`), `docs/results.md` is
generated from them (`python -m study.results.schema --markdown > docs/results.md`) and a test
checks the files a real study writes against them, so the documentation cannot drift from the files.

Standard library only: `study.spaces` (and so `--list` and `--help`) reads EPOCH_COLUMNS without
importing pandas, pyarrow or Ray.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

TRIALS, EPOCHS, PREDICTIONS, GRADCAM, STUDY_JSON = (
    "trials.parquet",
    "epochs.parquet",
    "predictions.parquet",
    "gradcam.parquet",
    "study.json",
)


# per-trial append logs of epochs.parquet's rows while a study runs (see study.results.tables)
EPOCH_PARTS = "epochs.parts"


CONFIRM = "confirm.parquet"  # written by the post-tuning confirmation, when it ran


# confirm.parquet's kinds of row (study.evaluation.confirm, study.evaluation.probe)
CONFIRM_KINDS = {
    "tuning": "a top trial's own best checkpoint (its validation score is biased upwards)",
    "seed": "the trial's config retrained with a new seed to its chosen epoch",
    "fold": "the config trained on k-1 folds of train+val, scored on the held-out fold",
    "refit": "the winner trained on train+val (no validation score): the final model",
    "ensemble": "the top trials' probabilities averaged",
    "probe": "logistic regression on a pretrained backbone's frozen features (mirror averaged "
    "in), C chosen on val: the bar tuning must beat",
}


ASHA_RUNGS = "asha_rungs.parquet"  # ASHA's rung records (study.tuning.schedulers.StudyASHA)


DRIVER_LOCK = "driver.lock"  # who runs the study now (study.results.lock)
RAY_STATE = "ray_state.zip"  # Ray's last whole save (study.tuning.ray_state)


# In every Parquet file's key-value metadata. 2: typed config/<name> columns from the space's
# declared hyperparameters (JSON-encoded where a column mixes types), a `study` column.
# 3: epochs.time is a UTC timestamp, gradcam.cam a 2-D fixed-size list, every table has `study`.
SCHEMA_VERSION = 3


# Type names used below, and what they are in Arrow (study.results.tables maps them):
#   string, int64, double, bool, binary       the Arrow types of those names
#   timestamp[us, tz=UTC]                      a point in time, UTC
#   float[S][S]                                fixed_size_list<fixed_size_list<float, S>, S>
#   per space                                  bool, int64, double or string (JSON, see below)
PER_SPACE = "per space"


MATRIX = "float[S][S]"


@dataclass(frozen=True)
class Column:
    name: str  # "config/<name>": a family of columns, one per <name>
    type: str
    meaning: str
    split: str = ""  # the data split a score is measured on: train, val or test

    @property
    def prefix(self) -> str | None:
        """`config/` for a family of columns `config/<name>`; None for one column."""
        return self.name.split("<")[0] if "<" in self.name else None

    def matches(self, column: str) -> bool:
        return column.startswith(self.prefix) if self.prefix else column == self.name


@dataclass(frozen=True)
class Table:
    file: str
    rows: str  # what one row is, and when rows are written
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.matches(name)), None)


STUDY = Column("study", "string", "the study's name (its directory's): tables concatenate")


# every accuracy's interval (study.results.statistics.binomial_ci)
CI_LOW = "lower end of the exact (Clopper–Pearson) 95 % interval of test_acc"
CI_HIGH = "upper end of the exact (Clopper–Pearson) 95 % interval of test_acc"


TRIAL_ID = Column(
    "trial_id", "string", "Ray Tune's trial id; `<study>/<trial_id>/` holds its checkpoints"
)


TABLES: dict[str, Table] = {
    TRIALS: Table(
        TRIALS,
        "one per trial; rewritten when a trial first reports and when it ends, every ~10 s "
        "while trials report, and after the test-split evaluation",
        (
            STUDY,
            TRIAL_ID,
            Column(
                "status",
                "string",
                "running, finished (reached max_epochs or its own early stopping), stopped "
                "(by ASHA), diverged (loss became NaN/inf) or errored",
            ),
            Column(
                "status_reason",
                "string",
                "why it ended: its end reason, the last line of its error, restore notes",
            ),
            Column("epochs", "int64", "epochs it reported"),
            Column("val_acc_avg", "double", "mean accuracy over its epochs", "val"),
            Column("val_acc_max", "double", "best accuracy over its epochs", "val"),
            Column("val_acc_last", "double", "accuracy of its last epoch", "val"),
            Column("val_loss_last", "double", "loss of its last epoch", "val"),
            Column("best_epoch", "int64", "the epoch of val_acc_max (0: none finite)", "val"),
            Column(
                "test_acc",
                "double",
                "accuracy of its best-validation weights; NaN except for the top_k trials by "
                "validation, evaluated once after tuning",
                "test",
            ),
            Column("test_macro_f1", "double", "macro-F1 over all classes (as test_acc)", "test"),
            Column("test_acc_ci_low", "double", CI_LOW, "test"),
            Column("test_acc_ci_high", "double", CI_HIGH, "test"),
            Column("params", "int64", "the model's parameter count"),
            Column(
                "gflops",
                "double",
                "forward GFLOPs of one image at the size it trained on, counted by the trial "
                "(NaN before its first report)",
            ),
            Column("wall_s", "double", "seconds its epochs took, summed"),
            Column("epoch_s_mean", "double", "mean seconds per epoch"),
            Column("node", "string", "the host that ran its last epoch"),
            Column("device", "string", "the torch device it trained on (cpu, cuda:0, ...)"),
            Column("model", "string", "the model family (`python -m study.models`)"),
            Column("dataset", "string", "the prepared data set it trained on"),
            Column("seed", "int64", "its seed: study seed x 10000 + Optuna trial number"),
            Column(
                "config/<name>",
                PER_SPACE,
                "one column per key of the trial's config and per declared hyperparameter of the "
                "space (study.json `hyperparameters`), typed from the declaration: bool, int64, "
                "double or string; a column whose values mix types (a categorical such as "
                '["none", "backbone", 1]) is a string of JSON per row, marked {"encoding": '
                '"json"} in its field metadata (`study.results.tables.decode_json_columns`); '
                "null where a trial lacks the key. `config/suggested` is the raw suggest_* "
                "values as JSON",
            ),
        ),
    ),
    EPOCHS: Table(
        EPOCHS,
        "one per trial and epoch; appended as results arrive (per-trial logs in "
        f"`{EPOCH_PARTS}/`, merged into this file at the end and by every reader)",
        (
            STUDY,
            TRIAL_ID,
            Column("epoch", "int64", "1, 2, ...: epochs trained so far (ASHA's time unit)"),
            Column("train_loss", "double", "mean training loss of the epoch", "train"),
            Column("train_acc", "double", "accuracy on the augmented training batches", "train"),
            Column("val_loss", "double", "loss after the epoch", "val"),
            Column("val_acc", "double", "accuracy after the epoch", "val"),
            Column("val_macro_f1", "double", "macro-F1 over all classes after the epoch", "val"),
            Column("epoch_s", "double", "wall seconds of the epoch, validation and checkpoint"),
            Column("images_per_s", "double", "training images per second"),
            Column(
                "micro_batch",
                "int64",
                "images per forward pass: batch_size, or less after CUDA out-of-memory halving",
            ),
            Column("lr", "double", "the learning rate at the end of the epoch"),
            Column("time", "timestamp[us, tz=UTC]", "when the epoch was reported"),
        ),
    ),
    PREDICTIONS: Table(
        PREDICTIONS,
        "one per test image and evaluated trial (the top_k by validation), after tuning",
        (
            STUDY,
            TRIAL_ID,
            Column("path", "string", "the image's path in the data set's source", "test"),
            Column("label", "string", "its true class", "test"),
            Column("pred", "string", "the predicted class", "test"),
            Column("confidence", "double", "the predicted class's probability", "test"),
            Column("prob_<class>", "double", "the probability of each class", "test"),
            Column(
                "thumb",
                "binary",
                "a PNG of the image for the 64 most confident mistakes per trial, else null",
                "test",
            ),
        ),
    ),
    GRADCAM: Table(
        GRADCAM,
        "a few test images per class for the best trial, sampled across characters",
        (
            STUDY,
            TRIAL_ID,
            Column("path", "string", "the image's path in the data set's source", "test"),
            Column("label", "string", "its true class", "test"),
            Column("pred", "string", "the predicted class", "test"),
            Column("confidence", "double", "the predicted class's probability", "test"),
            Column("image", "binary", "a PNG of the image as the model saw it", "test"),
            Column(
                "cam",
                MATRIX,
                "the Grad-CAM map for the predicted class, in [0, 1], rows x columns "
                "(S = cam_size); `study.load` gives 2-D numpy arrays",
                "test",
            ),
            Column("cam_size", "int64", "S: the map's side in pixels (the image size)"),
        ),
    ),
    CONFIRM: Table(
        CONFIRM,
        "one per model trained or scored after tuning (`--confirm-seeds`, `--confirm-folds`, "
        "`--refit`, `--ensemble`, `--tta`; the linear probe, `--probe`), when any ran; written "
        "once the confirmation ends, the probe's rows added after it",
        (
            STUDY,
            Column(
                "kind",
                "string",
                "what the row is: " + "; ".join(f"{k} {what}" for k, what in CONFIRM_KINDS.items()),
            ),
            Column(
                "trial_id",
                "string",
                "the trial whose config or checkpoint it is ('+'-joined for an ensemble; "
                "empty for a probe)",
            ),
            Column("model", "string", "the model family; for a probe, the frozen backbone"),
            Column("seed", "int64", "the run's seed (-1: none)"),
            Column("fold", "int64", "the held-out fold of a `fold` row (-1 otherwise)"),
            Column("epochs", "int64", "epochs trained: the epoch its trial chose (-1: none)"),
            Column("n_train", "int64", "training images (train, train+val or k-1 folds)"),
            Column("n_val", "int64", "images of the validation split or the held-out fold"),
            Column("val_acc", "double", "accuracy (the held-out fold's for `fold` rows)", "val"),
            Column("val_macro_f1", "double", "macro-F1 over all classes (as val_acc)", "val"),
            Column("test_acc", "double", "accuracy; only scored, never used to choose", "test"),
            Column("test_macro_f1", "double", "macro-F1 over all classes", "test"),
            Column("test_acc_ci_low", "double", CI_LOW, "test"),
            Column("test_acc_ci_high", "double", CI_HIGH, "test"),
            Column(
                "val_acc_tta", "double", "val_acc with the mirror image averaged in (--tta)", "val"
            ),
            Column("test_acc_tta", "double", "test_acc with --tta", "test"),
            Column("wall_s", "double", "seconds the row's training and scoring took"),
            Column("error", "string", "why the run failed (empty: it did not)"),
            Column(
                "probe_c",
                "double",
                "a probe's inverse L2 strength C, chosen on val from a small grid "
                "(`study.evaluation.probe.C_GRID`); NaN for other kinds",
                "val",
            ),
        ),
    ),
}


EPOCH_COLUMNS = [c.name for c in TABLES[EPOCHS].columns if c.name != "study"]


# The other files of a study directory (not tables of rows).
FILES = {
    STUDY_JSON: "the command, seed, versions, git commit, data set (version, split rule, classes, "
    "counts), settings (after the --set values, which `set` lists, and flags), declared "
    "hyperparameters with their roles, start and end times",
    "test_metrics.json": "per evaluated trial: per-class precision, recall, F1, support and the "
    "confusion matrix on the test split",
    f"{EPOCH_PARTS}/": "per-trial append logs (JSON lines) of epochs.parquet's rows while the "
    "study runs; `study.load`, the report and `study.results.tables.read_table` merge them",
    ASHA_RUNGS: "ASHA's rung records, restored by --resume; the report's rung lines",
    DRIVER_LOCK: "while a driver runs the study: its host, pid, start time, command and token "
    "(on a bucket also the lease's expiry); removed when it ends; a second driver is refused",
    "optuna.db": "the Optuna study (SQLite): `optuna-dashboard sqlite:///studies/<study>/optuna.db`",
    "tuner.pkl, experiment_state-*.json, searcher-state-*.pkl": "Ray Tune's experiment state "
    "(--resume, `ray.tune.ExperimentAnalysis`, `Tuner.restore`)",
    RAY_STATE: "the same files of Ray's last whole save in one file that appears whole: what "
    "--resume restores from (Ray uploads its files one by one)",
    "<trial_id>/": "Ray Tune's trial folder: params.json (the exact config), result.json, "
    "progress.csv, checkpoints, TensorBoard event files (`tensorboard --logdir studies/<study>`)",
}


def markdown() -> str:
    """docs/results.md: the tables' columns, generated from the declarations above."""
    out = [
        "# The results of a study",
        "",
        "<!-- generated by `python -m study.results.schema --markdown > docs/results.md`; "
        "do not edit -->",
        "",
        "A study writes `studies/<study>/`; every table is a Parquet file with "
        f"`schema_version` = {SCHEMA_VERSION} in its metadata. Split says which data split a "
        "score is measured on (blank: not a score). Read them with `study.load`, pandas, "
        "polars or duckdb ([running.md](running.md#reading-the-results): many studies at once "
        'with duckdb, or with polars\' `pl.concat(..., how="diagonal_relaxed")`, since studies '
        "of different spaces have different `config/` columns).",
        "",
    ]
    for table in TABLES.values():
        out += [f"## `{table.file}`", "", f"Rows: {table.rows}.", ""]
        out += ["| column | type | split | meaning |", "|---|---|---|---|"]
        for c in table.columns:
            out.append(f"| `{c.name}` | {c.type} | {c.split} | {c.meaning.replace('|', '/')} |")
        out.append("")
    out += ["## Other files", "", "| file | what |", "|---|---|"]
    out += [f"| `{name}` | {what} |" for name, what in FILES.items()]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m study.results.schema", description=__doc__.split("\n")[0]
    )
    p.add_argument("--markdown", action="store_true", help="print docs/results.md")
    a = p.parse_args(argv)
    if not a.markdown:
        p.print_help()
        return 0
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
