"""ASHA-stopped trials told to Optuna as PRUNED (ours) vs COMPLETE with their truncated score (Ray's
stock OptunaSearch), on the demo space over several seeds: quality per epoch spent.

    python benchmarks/pruned_vs_stock.py [--seeds 0 1 2] [--num-samples N] [--max-epochs E]
                                         [--toon-size default] [--image-size 48] [--quick]

Both variants run ASHA; only what TPE is told about stopped trials differs. By default each study
is the demo as shipped, except for more trials than TPE's 10 random start-up ones (before that
it never reads what it is told). Printed side by side as in asha_vs_fifo.py: epochs trained, wall
time, best val acc, the test accuracy of the best trial by validation and the best test accuracy
among the evaluated trials, each as the mean over seeds with its min-max spread.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.asha_vs_fifo import Variant, check, parser, run_variants  # noqa: E402

VARIANTS = [Variant("pruned", {"searcher": "study"}), Variant("stock", {"searcher": "stock"})]
NUM_SAMPLES = 16  # > TPE's 10 start-up trials


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    a = p.parse_args(argv)
    a.num_samples = a.num_samples or NUM_SAMPLES
    check(p, a)
    title = "PRUNED (ours) vs COMPLETE with truncated score (stock), ASHA on the demo space"
    # both variants stop trials with ASHA: the compass goal (ASHA against FIFO) does not apply
    return run_variants("pruned_vs_stock", VARIANTS, "stock", a, title, compass=False)


if __name__ == "__main__":
    sys.exit(main())
