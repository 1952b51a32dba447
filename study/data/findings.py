"""What `prepare` finds among good images, and the summary it prints.

Same bytes (sha256) under one class are exact duplicates: kept, in one split. Same bytes under two
or more classes are a label conflict: one picture with two answers, which would score a model
against both in the same split, so they are left out of every split unless --keep-conflicts.
Different bytes with the same perceptual hash in different splits are near-duplicates: reported.
"""

from __future__ import annotations

import pandas as pd

from study.data.splits import SPLITS

SHOWN = 20  # near-duplicate and conflict groups named in the summary (all are in the manifest)


def label_conflicts(df: pd.DataFrame) -> list[dict]:
    """Groups of files with the same bytes under two or more classes (columns path, label,
    sha256), each with its paths, classes and the class of each path."""
    out = []
    for h, rows in df.groupby("sha256", sort=True):
        if rows["label"].nunique() > 1:
            out.append(
                {
                    "sha256": h,
                    "paths": sorted(rows["path"]),
                    "classes": sorted(rows["label"].unique()),
                    "class_of": dict(sorted(zip(rows["path"], rows["label"], strict=True))),
                }
            )
    return out


def exact_duplicates(df: pd.DataFrame) -> list[list[str]]:
    """Paths of files with the same bytes under one class (kept in one split by the split rule).
    Groups across classes are label conflicts, listed on their own."""
    return [
        sorted(g["path"])
        for _, g in df.groupby("sha256")
        if len(g) > 1 and g["label"].nunique() == 1
    ]


def near_duplicates(df: pd.DataFrame) -> list[dict]:
    """Different files with the same perceptual hash in different splits (likely leakage)."""
    out = []
    for h, rows in df.groupby("dhash"):
        if rows["sha256"].nunique() > 1 and rows["split"].nunique() > 1:
            out.append(
                {
                    "dhash": f"{int(h):016x}",
                    "paths": sorted(rows["path"]),
                    "splits": sorted(rows["split"].unique()),
                    # which split each file is in, for the summary's line naming them
                    "split_of": dict(sorted(zip(rows["path"], rows["split"], strict=True))),
                }
            )
    return out


def _named(groups: list[dict], of: str, sep: str, key: str) -> list[str]:
    """One line per group, 'path (its split or class) ~ ...', the first SHOWN of them."""
    lines = []
    for d in groups[:SHOWN]:
        where = d.get(of) or {}
        lines.append("  " + f" {sep} ".join(f"{p} ({where.get(p, '?')})" for p in d["paths"]))
    if len(groups) > SHOWN:
        lines.append(f"  ... and {len(groups) - SHOWN} more (manifest.json: {key})")
    return lines


def summarise(manifest: dict, table: pd.DataFrame) -> str:
    counts = pd.crosstab(table["label"], table["split"], margins=True, margins_name="total")
    # every class and split, with zeros: a class lacking a split shows it (--allow-empty-splits)
    rows = [c for c in manifest.get("classes", []) if c not in counts.index]
    counts = counts.reindex(
        index=[*[i for i in counts.index if i != "total"], *rows, "total"],
        columns=[*SPLITS, "total"],
        fill_value=0,
    )
    conflicts = manifest.get("label_conflicts", [])
    fate = (
        "kept (--keep-conflicts)" if manifest.get("conflicts_kept") else "left out of every split"
    )
    lines = [
        f"data set {manifest['name']} (version {manifest['version']}) from {manifest['source']}",
        f"split rule {manifest['split_rule']}, seed {manifest['seed']}; images per class x split:",
        counts.to_string(),
        "formats: " + ", ".join(f"{k} {v}" for k, v in manifest["formats"].items()),
        "modes: " + ", ".join(f"{k} {v}" for k, v in manifest["modes"].items()),
        f"exact duplicates: {len(manifest['duplicates'])} group(s) (kept within one split); "
        f"near-duplicates across splits: {len(manifest['near_duplicates'])}",
        *_named(manifest["near_duplicates"], "split_of", "~", "near_duplicates"),
        f"label conflicts (same bytes under two or more classes): {len(conflicts)}"
        + (f", {fate}" if conflicts else ""),
        *_named(conflicts, "class_of", "=", "label_conflicts"),
    ]
    lacking = manifest.get("empty_splits") or {}
    if lacking:
        lines.append(f"classes lacking a split (--allow-empty-splits): {len(lacking)}")
        lines += [f"  {c}: no {', '.join(s)} image" for c, s in lacking.items()]
    lines.append(f"skipped files: {len(manifest['skipped'])}")
    lines += [f"  {s['path']}: {s['reason']}" for s in manifest["skipped"]]
    return "\n".join(lines)
