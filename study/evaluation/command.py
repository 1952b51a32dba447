"""`python -m study.evaluate STUDY_DIR --source FOLDER [--label-map a=b,...] [--top K]`: score a
study's best trials on any class-per-folder tree (a cross-style check).

The command line only: it imports neither torch nor the data layer until every option is checked,
so `--help` answers at once. The models are loaded and run by study.evaluation.inference; the
study's trials are found by study.results.lookups.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from study.evaluation.confirm_options import TTA_MODES


def interpolations(study_dir: str, trial_ids: list[str], use_final: bool) -> list[str]:
    """The resize filters of the models to be scored (their timm pretrained_cfg's, read from
    their configs without loading any weights), so the folder is decoded once per filter. A
    final_model/ without its model.pt fails here, before any image is decoded."""
    from study.models import input_interpolation
    from study.results.lookups import final_model, trial_config
    from study.training.config import TrainConfig

    configs = [trial_config(study_dir, tid) for tid in dict.fromkeys(trial_ids)]
    found = final_model(study_dir) if use_final else None
    if found is not None:
        configs.append(found[0]["config"])
    names = {TrainConfig.from_config(c).model for c in configs}
    return sorted({input_interpolation(name) for name in names})


class UsageError(ValueError):
    """argparse's complaint, reported like every other bad input: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    p = _Parser(
        prog=prog or "python -m study.evaluate",
        description="Score a study's best trials (by validation) on another class-per-folder "
        "image tree: accuracy with its 95 % CI and macro-F1 per trial, over the classes the "
        "tree shares with the study (a cross-style check; the study's own test split is scored "
        "by study run).",
    )
    p.add_argument(
        "study_dir", help="a study directory written by study run (a path or s3:// / gs:// URI)"
    )
    p.add_argument("--source", required=True, help="class-per-folder image tree (or .zip)")
    p.add_argument(
        "--label-map", default=None, help="FOLDER=STUDY_CLASS,... where folder names differ"
    )
    p.add_argument(
        "--top",
        type=int,
        default=None,
        help="evaluate the best K trials (by validation); default: the study's final model "
        "(--refit) if it has one, else the best trial",
    )
    p.add_argument("--ensemble", type=int, default=0, help="also the best K trials averaged")
    p.add_argument("--tta", default="none", choices=TTA_MODES, help="also with the mirror image")
    p.add_argument(
        "--out", default=None, help="where scores.json/.parquet go (default: STUDY/evaluations/SRC)"
    )
    try:  # every check before any image is decoded or model loaded
        a = p.parse_args(argv)
        if a.top is not None and a.top < 1:
            raise ValueError(f"--top {a.top}: expected the number of best trials, an integer >= 1")
        if a.ensemble < 0 or a.ensemble == 1:
            raise ValueError(f"--ensemble {a.ensemble}: expected an integer >= 2 (models averaged)")
        from study import storage
        from study.evaluation.folder_source import decode_folder, parse_label_map, plan_folder
        from study.results.lookups import FINAL_DIR, FINAL_JSON, read_study, trials_with_checkpoints

        label_map = parse_label_map(a.label_map)
        study_dir = storage.absolute(a.study_dir)
        meta, trials, classes, size = read_study(study_dir)
        use_final = a.top is None and storage.is_file(
            storage.join(study_dir, FINAL_DIR, FINAL_JSON)
        )
        k = max(a.top or (0 if use_final else 1), a.ensemble)
        chosen, passed_over = (
            trials_with_checkpoints(study_dir, trials, meta["settings"], k) if k else ([], [])
        )
        if a.ensemble and len(chosen) < a.ensemble:
            raise ValueError(
                f"--ensemble {a.ensemble}: only {len(chosen)} trials of {study_dir} "
                "have checkpoints"
            )
        singles = [] if use_final and a.top is None else chosen[: a.top or 1]
        filters = interpolations(study_dir, [*singles, *chosen[: a.ensemble]], use_final)
        plan = plan_folder(a.source, classes, label_map)
        arrays = {}  # the folder decoded once per resize filter the models' weights expect
        for interpolation in filters:
            arrays[interpolation], bad = decode_folder(plan, a.source, classes, size, interpolation)
    except (OSError, ValueError) as e:  # a StudyFileError too: the file and what to do
        print(f"error: {e}", file=sys.stderr)
        return 2
    for paths in plan.conflicts:
        print(
            f"warning: one file (same sha256) under different classes, left out of scoring as no "
            f"label can be trusted: {', '.join(paths)}",
            file=sys.stderr,
        )
    for path, reason in bad:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if passed_over:
        print(f"note: better-ranked trials without a checkpoint: {', '.join(passed_over)}")
    out = a.out or storage.join(study_dir, "evaluations", storage.basename(a.source.rstrip("/")))
    from study.evaluation.inference import score_folder  # torch: only once every check has passed

    return score_folder(
        a, study_dir, singles, chosen[: a.ensemble], use_final, arrays, classes, plan, bad, out
    )
