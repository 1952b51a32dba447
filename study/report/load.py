"""Read a study directory (local path or URI) into pandas, noting what is missing.

A study that is still running may lack any of the Parquet files; those become notes shown on the
page. A directory that is absent or holds none of the study files, a file without the columns the
report needs, or a damaged file (which the page would silently leave out: files are written whole,
so a running study never shows half of one) is an error naming the file, raised before any drawing
starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from study import storage
from study.results import tables
from study.results.errors import StudyFileError, why
from study.results.schema import (
    ASHA_RUNGS,
    CONFIRM,
    EPOCH_PARTS,
    EPOCHS,
    GRADCAM,
    PREDICTIONS,
    STUDY_JSON,
    TRIALS,
)
from study.results.study_json import RecordError, check_record

# Columns the report reads; other columns are passed through untouched.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "trials": (
        "trial_id",
        "status",
        "epochs",
        "val_acc_avg",
        "val_acc_max",
        "val_loss_last",
        "test_acc",
        "test_acc_ci_low",
        "test_acc_ci_high",
        "params",
        "wall_s",
        "epoch_s_mean",
        "model",
        "dataset",
    ),
    "epochs": ("trial_id", "epoch", "val_loss", "val_acc"),
    "predictions": ("trial_id", "path", "label", "pred", "confidence"),
    "gradcam": ("trial_id", "path", "label", "pred", "confidence", "image", "cam", "cam_size"),
}
# the tables' files (study.results.schema declares their columns)
FILES = {"trials": TRIALS, "epochs": EPOCHS, "predictions": PREDICTIONS, "gradcam": GRADCAM}
TABLES = tuple(FILES)
STUDY_FILES = (STUDY_JSON, *FILES.values())
# in the <head> of every page written from template.html: a folder whose index.html lacks it
# was not written by the report, and is never overwritten
REPORT_MARKER = '<meta name="generator" content="study.report">'


class ReportInputError(ValueError):
    """The study directory cannot be reported on; the message names the folder or file and says
    what is missing or wrong."""


@dataclass
class StudyData:
    """Everything the report reads from one study directory; absent parts are None."""

    uri: str
    meta: dict[str, Any]
    trials: pd.DataFrame | None = None
    epochs: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    gradcam: pd.DataFrame | None = None
    # ASHA's rung records as it kept them (none for another scheduler or before its first rung)
    rungs: pd.DataFrame | None = None
    # confirm.parquet: the confirmation's and the linear probe's rows (none before they ran)
    confirm: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or storage.basename(self.uri) or "study")

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in (self.meta.get("dataset") or {}).get("classes") or []]

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.meta.get("settings") or {})

    @property
    def hyperparameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.meta.get("hyperparameters") or {})


def check_out_dir(out: str | Path, what: str = "--out") -> None:
    """Refuse an output folder that holds anything the report did not write (a page of ours is
    replaced; an empty or new folder is fine), before anything is written."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise ReportInputError(f"{what} {out}: exists and is not a folder")
    index = out / "index.html"
    if index.is_file() and not index.is_symlink():
        with index.open("rb") as f:
            if REPORT_MARKER.encode() in f.read(4096):
                return
        raise ReportInputError(
            f"{what} {out}: its index.html was not written by study.report; "
            "choose another folder (nothing was written)"
        )
    if index.exists() or index.is_symlink() or any(out.iterdir()):
        raise ReportInputError(
            f"{what} {out}: not empty and holds no report of study.report; "
            "choose an empty or new folder (nothing was written)"
        )


def _resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    # the runner's resolution (one client per bucket, local paths made absolute), so a URI means
    # the same to the report as to the study that wrote it; storage.resolve raises ValueError
    # (ArrowInvalid is one) for a scheme pyarrow does not know, e.g. foo://x
    try:
        return storage.resolve(uri)
    except (ValueError, OSError) as exc:
        raise ReportInputError(f"cannot open study directory {uri!r}: {exc}") from exc


def _read_json(uri: str) -> dict[str, Any]:
    path = storage.join(uri, STUDY_JSON)
    try:  # the fields the report relies on, checked before any drawing
        return check_record(tables.read_json(path), path)
    except (StudyFileError, RecordError) as exc:  # each names the file
        raise ReportInputError(str(exc)) from exc


def _read(uri: str, file: str) -> pd.DataFrame | None:
    """tables.read_table, any failure to read the file a ReportInputError naming it."""
    try:  # epochs with the rows a running (or killed) study still holds in its logs
        return tables.read_table(uri, file)
    except StudyFileError as exc:  # damaged: the file, and what to do
        raise ReportInputError(str(exc)) from exc
    except OSError as exc:  # not fetched: no permission, a storage that does not answer
        remedy = "check its permissions or the connection to its storage, and run again"
        named = StudyFileError(storage.join(uri, file), f"cannot be read ({why(exc)})", remedy)
        raise ReportInputError(str(named)) from exc
    except (pa.ArrowException, ValueError) as exc:  # values the table cannot hold
        raise ReportInputError(str(StudyFileError(storage.join(uri, file), why(exc)))) from exc


def _read_table(uri: str, path: str, table: str) -> pd.DataFrame:
    df = _read(uri, FILES[table])
    if df is None:  # gone since it was listed
        return pd.DataFrame(columns=list(REQUIRED_COLUMNS[table]))
    missing = [c for c in REQUIRED_COLUMNS[table] if c not in df.columns]
    if missing and df.empty:  # e.g. an empty table written before the first row existed
        return pd.DataFrame(columns=list(REQUIRED_COLUMNS[table]))
    if missing:
        raise ReportInputError(
            f"{path}: missing column(s) {missing}; expected at least "
            f"{list(REQUIRED_COLUMNS[table])}"
        )
    return df


def load_study(uri: str) -> StudyData:
    """Load ``uri`` (a directory path or URI). Raises ReportInputError if nothing is reportable."""
    fs, root = _resolve(str(uri))
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise ReportInputError(f"study directory {uri!r} does not exist")
    if info.type != pafs.FileType.Directory:
        raise ReportInputError(f"{uri!r} is not a directory; expected a study directory")
    present = {
        name
        for name in STUDY_FILES
        if fs.get_file_info(f"{root}/{name}").type == pafs.FileType.File
    }
    if fs.get_file_info(f"{root}/{EPOCH_PARTS}").type == pafs.FileType.Directory:
        present.add(EPOCHS)  # only logs yet: a study killed before its first compaction
    if not present & {STUDY_JSON, TRIALS, EPOCHS}:
        raise ReportInputError(
            f"{uri!r} holds no study results: none of study.json, trials.parquet, "
            f"epochs.parquet found (expected files: {', '.join(STUDY_FILES)})"
        )
    notes: list[str] = []
    if STUDY_JSON in present:
        meta = _read_json(str(uri))
    else:
        meta = {}
        notes.append("study.json is missing: data set, search space and settings are unknown.")
    # shown on the page: never a URI's credentials (study.json written before redaction too)
    for key, where in (("command", meta), ("data_dir", meta.get("dataset"))):
        if isinstance(where, dict) and isinstance(where.get(key), str):
            where[key] = storage.redact(where[key])
    data = StudyData(uri=storage.redact(str(uri)), meta=meta, notes=notes)
    lacking = {
        "trials": "no leaderboard, hyperparameter or cost plots",
        "epochs": "no learning curves",
        "predictions": "no confusion matrix, per-class scores or misclassified images",
        "gradcam": "no Grad-CAM heatmaps (computed by the runner for the best model)",
    }
    for table, file in FILES.items():
        if file in present:
            setattr(data, table, _read_table(str(uri), f"{root}/{file}", table))
        else:
            notes.append(f"{table}.parquet is missing: {lacking[table]}.")
    data.rungs = _read_rungs(fs, root, str(uri))
    if fs.get_file_info(f"{root}/{CONFIRM}").type == pafs.FileType.File:
        data.confirm = _read(str(uri), CONFIRM)
    return data


def _read_rungs(fs: pafs.FileSystem, root: str, uri: str) -> pd.DataFrame | None:
    """asha_rungs.parquet, the records ASHA decided on (study.tuning.schedulers.StudyASHA writes
    them)."""
    if fs.get_file_info(f"{root}/{ASHA_RUNGS}").type != pafs.FileType.File:
        return None
    rungs = _read(uri, ASHA_RUNGS)
    if rungs is not None and "milestone" not in rungs:
        raise ReportInputError(f"{root}/{ASHA_RUNGS}: missing column 'milestone'")
    return rungs
