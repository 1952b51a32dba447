"""A class-per-folder tree to score with a study's models (`study.evaluate --source`).

Everything is decided from the listing and the bytes before anything is decoded: which folders map
to which class of the study (`--label-map`), which are left out, and which files cannot be trusted.
"""

from __future__ import annotations

import difflib
import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.data import SplitArrays
from study.data.decode import BadImage, decode_rgb, resize_square
from study.data.sources import SourceItem, read_class_folders


def parse_label_map(text: str | None) -> dict[str, str]:
    """`a=b,c=d`: folder a of the source holds images of the study's class b."""
    out: dict[str, str] = {}
    for part in filter(None, (s.strip() for s in (text or "").split(","))):
        key, eq, value = (s.strip() for s in part.partition("="))
        if not (eq and key and value):
            raise ValueError(f"--label-map {part!r}: expected FOLDER=CLASS pairs, comma-separated")
        if out.get(key, value) != value:
            raise ValueError(f"--label-map maps folder {key!r} twice ({out[key]}, {value})")
        out[key] = value
    return out


def _hint(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_label_map(
    label_map: dict[str, str], folders: list[str], classes: list[str], source: str
) -> None:
    """Every key names a folder of the source and every value a class of the study: a typo must
    stop the run, not quietly shrink it to the classes that happen to match."""
    for key, value in label_map.items():
        if key not in folders:
            raise ValueError(
                f"--label-map {key}={value}: {source} has no class folder {key!r}"
                f"{_hint(key, folders)}; its folders: {', '.join(folders)}"
            )
        if value not in classes:
            raise ValueError(
                f"--label-map {key}={value}: {value!r} is not a class of the study"
                f"{_hint(value, classes)}; its classes: {', '.join(classes)}"
            )


def require_two_classes(scored: list[str], source: str, classes: list[str]) -> None:
    """Accuracy on one class is 1.0 for a model that always answers it: it means nothing."""
    names = sorted(set(scored), key=classes.index)
    if len(names) < 2:
        raise ValueError(
            f"{source}: {len(names)} class(es) of the study to score ({', '.join(names) or 'none'})"
            f", at least 2 needed; name folders after the study's classes ({', '.join(classes)}) "
            "or map them with --label-map FOLDER=CLASS"
        )


@dataclass
class FolderPlan:
    """What will be scored, decided from the listing and the bytes, before anything is decoded."""

    items: list[tuple[SourceItem, str]]  # (file, study class)
    left_out: dict[str, int]  # folder -> files: neither a class of the study nor in --label-map
    conflicts: list[list[str]]  # paths of one file found under different classes: not scored


def drop_conflicting_copies(
    items: list[tuple[SourceItem, str]],
) -> tuple[list[tuple[SourceItem, str]], list[list[str]]]:
    """Files with the same bytes (sha256) under different classes: one label at most is right, and
    scoring every copy counts one image several times with contradicting truths, so none is
    scored. Copies under one class are left alone (a folder may hold a file twice on purpose)."""
    if not items:
        return items, []
    df = pd.DataFrame(
        {
            "sha256": [hashlib.sha256(item.read()).hexdigest() for item, _ in items],
            "label": [label for _, label in items],
        }
    )
    bad = (df.groupby("sha256")["label"].transform("nunique") > 1).to_numpy()
    conflicts = [
        [items[i][0].path for i in rows] for rows in df[bad].groupby("sha256").groups.values()
    ]
    return [it for it, b in zip(items, bad, strict=True) if not b], conflicts


def plan_folder(source: str, classes: list[str], label_map: dict[str, str]) -> FolderPlan:
    """List a class-per-folder tree and decide which files are scored under which class."""
    files, _ = read_class_folders(source)
    counts = Counter(item.label for item in files)
    check_label_map(label_map, sorted(counts), classes, source)
    class_of = {f: label_map.get(f, f) for f in counts if f in label_map or f in classes}
    left_out = {f: n for f, n in sorted(counts.items()) if f not in class_of}
    items = [(item, class_of[item.label]) for item in files if item.label in class_of]
    require_two_classes([label for _, label in items], source, classes)
    items, conflicts = drop_conflicting_copies(items)
    require_two_classes([label for _, label in items], source, classes)
    return FolderPlan(items, left_out, conflicts)


def decode_folder(
    plan: FolderPlan,
    source: str,
    classes: list[str],
    image_size: int,
    interpolation: str = "bicubic",
) -> tuple[SplitArrays, list[tuple[str, str]]]:
    """The planned files as model input (resized with the model's `interpolation`), and the
    (path, reason) of each that would not decode."""
    images, labels, paths, bad = [], [], [], []
    for item, label in plan.items:
        try:
            images.append(resize_square(decode_rgb(item.read()), image_size, interpolation))
        except BadImage as e:
            bad.append((item.path, str(e)))
            continue
        labels.append(classes.index(label))
        paths.append(item.path)
    if not images:
        reasons = Counter(reason for _, reason in bad).most_common(3)
        raise ValueError(
            f"{source}: none of the {len(bad)} images to score could be decoded ("
            + "; ".join(f"{n} x {reason}" for reason, n in reasons)
            + (", ..." if len({r for _, r in bad}) > 3 else "")
            + ")"
        )
    require_two_classes([classes[i] for i in labels], source, classes)
    return SplitArrays(np.stack(images), np.asarray(labels, np.int64), paths), bad
