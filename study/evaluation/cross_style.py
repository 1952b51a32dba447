"""Honest scores of a study's models on another style's class-per-folder tree (`study.evaluate`).

A model trained on FERG's 7 emotions scored on manga's folders only sees the classes the two
share. Said plainly, next to each other:
  - what was scored and what was left out, per folder, and why;
  - the majority-class baseline on the scored images (always answering the commonest class);
  - accuracy when only the shared classes compete (the model's other outputs ignored) and when
    all of the model's classes compete (top-1 over every class it knows);
  - macro-F1 over the scored classes (both ways), per-class recall and the confusion matrix
    (rows: true scored class; columns: every class the model can answer).
Everything printed is also written to scores.json and scores.parquet (`--out`).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from study import storage
from study.data import SplitArrays
from study.evaluation.folder_source import FolderPlan
from study.results.statistics import accuracy_ci, confusion_counts, precision_recall_f1
from study.results.tables import write_parquet

SCORES_JSON, SCORES_PARQUET = "scores.json", "scores.parquet"


def _folder(path: str) -> str:
    """The class folder of a file (images sit directly in their folder)."""
    parts = path.rstrip("/").split("/")
    return parts[-2] if len(parts) > 1 else ""


def accounting(plan: FolderPlan, arr: SplitArrays, bad: list[tuple[str, str]]) -> pd.DataFrame:
    """Per source folder: the study class it is scored as, images scored, images left out and
    why (not a class of the study, same file under two classes, not decodable)."""
    rows: dict[str, dict[str, Any]] = {}

    def row(folder: str) -> dict[str, Any]:
        return rows.setdefault(
            folder,
            {
                "folder": folder,
                "class": "",
                "scored": 0,
                "unmapped": 0,
                "conflict": 0,
                "undecodable": 0,
            },
        )

    for item, cls in plan.items:
        row(item.label)["class"] = cls
    for path in arr.paths:
        row(_folder(path))["scored"] += 1
    for folder, n in plan.left_out.items():
        row(folder)["unmapped"] += n
    for paths in plan.conflicts:
        for path in paths:
            row(_folder(path))["conflict"] += 1
    for path, _ in bad:
        row(_folder(path))["undecodable"] += 1
    df = pd.DataFrame(list(rows.values()))
    df["left_out"] = df[["unmapped", "conflict", "undecodable"]].sum(axis=1)
    return df.sort_values("folder").reset_index(drop=True)


def baseline(labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy of always answering the commonest scored class."""
    counts = np.bincount(labels, minlength=len(classes))
    k = int(counts.argmax())
    return {"class": classes[k], "accuracy": float(counts[k] / counts.sum())}


def _f1_over(counts: np.ndarray, rows: np.ndarray) -> tuple[float, np.ndarray]:
    """Macro-F1 over the classes `rows` (study positions) and their recalls, from K x K counts."""
    _, recall, f1 = precision_recall_f1(counts)
    return float(f1[rows].mean()), recall[rows]


def scores(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Both ways of competing, from probabilities over all K study classes (`labels`: study
    class positions of the scored images)."""
    scored = np.unique(labels)
    k = len(classes)
    shared_pred = scored[probs[:, scored].argmax(1)]  # only the scored classes compete
    all_pred = probs.argmax(1)  # every class the model knows competes
    acc, low, high = accuracy_ci(shared_pred == labels)
    acc_all, low_all, high_all = accuracy_ci(all_pred == labels)
    f1_shared, rec_shared = _f1_over(confusion_counts(labels, shared_pred, k), scored)
    counts_all = confusion_counts(labels, all_pred, k)
    f1_all, rec_all = _f1_over(counts_all, scored)
    support = np.bincount(labels, minlength=k)[scored]
    return {
        "images": int(len(labels)),
        "acc_shared": acc,
        "acc_shared_ci_low": low,
        "acc_shared_ci_high": high,
        "acc_all": acc_all,
        "acc_all_ci_low": low_all,
        "acc_all_ci_high": high_all,
        "macro_f1_shared": f1_shared,
        "macro_f1_all": f1_all,
        "predicted_outside_shared": float(np.mean(~np.isin(all_pred, scored))),
        "per_class": {
            classes[c]: {"recall_shared": float(rs), "recall_all": float(ra), "support": int(n)}
            for c, rs, ra, n in zip(scored, rec_shared, rec_all, support, strict=True)
        },
        "confusion": {
            "rows": [classes[c] for c in scored],
            "columns": list(classes),
            "counts": counts_all[scored].tolist(),
        },
    }


SUMMARY = [  # the third column is the accuracy (what the runner stores as test_acc)
    "model", "images", "acc_shared", "acc_shared_ci_low", "acc_shared_ci_high", "acc_all",
    "macro_f1_shared", "macro_f1_all", "predicted_outside_shared", "baseline",
]  # fmt: skip


def report(
    source: str,
    classes: list[str],
    arr: SplitArrays,
    plan: FolderPlan,
    bad: list[tuple[str, str]],
    results: dict[str, dict[str, Any]],
    out_dir: str,
) -> pd.DataFrame:
    """Print everything, write scores.json / scores.parquet to `out_dir`; returns the summary
    (its last printed line is the last model's row)."""
    folders = accounting(plan, arr, bad)
    base = baseline(arr.labels, classes)
    shared = [classes[i] for i in np.unique(arr.labels)]
    per_class = Counter(classes[i] for i in arr.labels)
    print(
        f"{source}: {len(arr.labels)} images scored in {len(shared)} classes: "
        + ", ".join(f"{c} ({per_class[c]})" for c in shared)
    )
    if plan.left_out:
        print(
            "left out (not a class of the study, not in --label-map): "
            + ", ".join(f"{f} ({n} images)" for f, n in plan.left_out.items())
        )
    print("\nper folder (scored as the study's class; left out and why):")
    print(folders.to_string(index=False))
    unscored = [c for c in classes if c not in shared]
    print(
        f"\nmajority-class baseline on the scored images: {base['accuracy']:.3f} "
        f"(always '{base['class']}')"
    )
    print(
        f"shared: only the {len(shared)} scored classes compete; all: top-1 over all "
        f"{len(classes)} classes of the model"
        + (f" (also {', '.join(unscored)})" if unscored else "")
    )
    rows = []
    for name, m in results.items():
        print(f"\n{name}: per-class recall (shared / all classes competing)")
        recall = pd.DataFrame(m["per_class"]).T.astype({"support": int})
        print(recall.to_string(float_format=lambda v: f"{v:.3f}"))
        conf = m["confusion"]
        print(f"{name}: confusion matrix (rows: true class; columns: predicted, all classes)")
        print(pd.DataFrame(conf["counts"], index=conf["rows"], columns=conf["columns"]).to_string())
        rows.append({"model": name, "baseline": base["accuracy"]} | m)
    summary = pd.DataFrame(rows)[SUMMARY]
    payload = {
        "source": source,
        "classes": classes,
        "folders": folders.to_dict("records"),
        "baseline": base,
        "models": results,
    }
    storage.write_text(storage.join(out_dir, SCORES_JSON), json.dumps(payload, indent=2))

    write_parquet(summary, storage.join(out_dir, SCORES_PARQUET))
    print()
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return summary
