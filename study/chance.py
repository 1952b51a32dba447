"""Is a trial distinguishable from guessing? A binomial bound on its best validation accuracy.

A model that ignores its input scores, on n validation images, a Binomial(n, p0) count with p0 at
most the largest class's share of the split (always predicting that class; 1/k for a balanced
split). A trial whose best validation accuracy over E epochs stays at or below the (1 - alpha/E)
quantile of that binomial (Bonferroni over the epochs, since the best of E noisy values is
reported) has not shown that it learned anything: "at chance". Pure functions of numbers (no
pandas, no Ray), so the trainer, the runner, the report and the benchmarks share one verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ALPHA = 0.05


@dataclass(frozen=True)
class Baseline:
    """What guessing scores on one validation split."""

    num_classes: int
    n_val: int
    majority: float = 0.0  # the largest class's share of the validation split

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.n_val < 1:
            raise ValueError(
                f"Baseline needs num_classes >= 1 and n_val >= 1, got {self.num_classes}, "
                f"{self.n_val}"
            )

    @property
    def p0(self) -> float:
        return max(1.0 / self.num_classes, self.majority)

    @classmethod
    def from_manifest(cls, manifest: Mapping) -> Baseline:
        """From a prepared data set's manifest.json (its val counts per class)."""
        per_class = {c: v.get("val", 0) for c, v in manifest.get("class_counts", {}).items()}
        n_val = int(manifest["counts"]["val"])
        majority = max(per_class.values(), default=0) / n_val if n_val else 0.0
        return cls(len(manifest["classes"]), n_val, majority)


def binomial_upper(n: int, p: float, alpha: float) -> int:
    """The smallest count c with P(X >= c) <= alpha for X ~ Binomial(n, p)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha}: expected a value in (0, 1)")
    if p <= 0:
        return 1
    if p >= 1:
        return n + 1
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(n + 1)
    ]  # fmt: skip
    tail = 0.0
    for c in range(n, -1, -1):  # accumulate P(X >= c) from the top
        tail += math.exp(logs[c])
        if tail > alpha:
            return c + 1
    return 0


def chance_bound(base: Baseline, epochs: int = 1, alpha: float = ALPHA) -> float:
    """The accuracy a guesser's best of `epochs` validations stays at or below (1 - alpha)."""
    c = binomial_upper(base.n_val, base.p0, alpha / max(1, epochs))
    return (c - 1) / base.n_val


def best_at_chance(best: float, epochs: int, base: Baseline, alpha: float = ALPHA) -> bool:
    """True when a best validation accuracy over `epochs` epochs does not beat guessing; NaN (no
    epoch validated) counts as at chance: it showed nothing."""
    if not (best == best and math.isfinite(best)):
        return True
    return best <= chance_bound(base, epochs, alpha) + 1e-12


def at_chance(val_accs: Sequence[float], base: Baseline, alpha: float = ALPHA) -> bool:
    """True when no validation accuracy of the history beats guessing (see the module doc)."""
    finite = [v for v in val_accs if v == v and math.isfinite(v)]
    return best_at_chance(max(finite, default=math.nan), len(val_accs), base, alpha)


def at_chance_trials(trials, base: Baseline, alpha: float = ALPHA):
    """A boolean Series over trials.parquet rows (its val_acc_max and epochs columns)."""
    import pandas as pd

    flags = [
        best_at_chance(float(b), int(e), base, alpha)
        for b, e in zip(trials["val_acc_max"], trials["epochs"], strict=True)
    ]
    return pd.Series(flags, index=trials.index, dtype=bool)


def verdict(val_accs: Sequence[float], base: Baseline, alpha: float = ALPHA) -> str:
    """One line for the console and the report; empty when the trial beat chance."""
    finite = [v for v in val_accs if v == v and math.isfinite(v)]
    return best_verdict(max(finite, default=math.nan), len(val_accs), base, alpha)


def best_verdict(best: float, epochs: int, base: Baseline, alpha: float = ALPHA) -> str:
    """`verdict` from a trial's best validation accuracy and its number of epochs."""
    if not best_at_chance(best, epochs, base, alpha):
        return ""
    shown = f"best val acc {best:.3f}" if best == best else "no validation"
    return (
        f"at chance after {epochs} epoch(s): {shown} <= {chance_bound(base, epochs, alpha):.3f}, "
        f"the {1 - alpha:.0%} bound of guessing ({base.p0:.3f} on {base.n_val} val images)"
    )
