"""The small-data options of `study.run` (see study.evaluation.confirm), kept light: `--help`
imports this and nothing heavy."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

TTA_MODES = ("none", "hflip")  # test-time augmentation: none, or + the mirror image


@dataclass(frozen=True)
class Plan:
    seeds: int = 0
    folds: int = 0
    refit: bool = False
    ensemble: int = 0
    tta: str = "none"

    @property
    def active(self) -> bool:
        return bool(self.seeds or self.folds or self.refit or self.ensemble or self.tta != "none")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("small data: after tuning (study.evaluation.confirm)")
    g.add_argument(
        "--confirm-seeds",
        type=int,
        default=0,
        metavar="N",
        help="retrain the top_k configs N times with new seeds; rank by their mean",
    )
    g.add_argument(
        "--confirm-folds",
        type=int,
        default=0,
        metavar="K",
        help="cross-validate the top_k configs on K folds of train+val",
    )
    g.add_argument(
        "--refit",
        action="store_true",
        help="train the winner on train+val: the study's final_model",
    )
    g.add_argument(
        "--ensemble",
        type=int,
        default=0,
        metavar="K",
        help="also score the top K trials' averaged probabilities",
    )
    g.add_argument(
        "--tta",
        default="none",
        choices=TTA_MODES,
        help="test-time augmentation for every score after tuning",
    )
    g.add_argument(
        "--probe",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after tuning, a linear probe (logistic regression on each pretrained backbone's "
        "frozen features, C chosen on val) scored on test: the bar tuning must beat (default: "
        "on for spaces whose models are pretrained)",
    )
    g.add_argument(
        "--init-from",
        default=None,
        metavar="STUDY_DIR[:TRIAL_ID]",
        help="warm-start every trial from another study's best (or named, or "
        "':final') model; its architecture becomes the default config",
    )
