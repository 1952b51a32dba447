"""ASHA vs no early stopping (FIFO) on the demo space, over several seeds: quality per epoch spent.

    python benchmarks/asha_vs_fifo.py [--seeds 0 1 2] [--num-samples N] [--max-epochs E]
                                      [--toon-size default] [--image-size 48] [--quick]

Each (variant, seed) is one real study (`python -m study.run --space <generated file>`) of the demo
space with only its SpaceSettings changed; a seed gives both variants the same sampler seed, so
TPE's random start-up proposes the same first configurations. By default it runs the demo as
shipped (its data set, size, trials and rungs), a setting whose best trials reach >= 0.7 test
accuracy. Printed side by side: epochs trained, wall time, best val acc, the test accuracy of the
best trial by validation (and the best test accuracy among the evaluated trials), each as the mean
over seeds with its min-max spread, then ASHA / FIFO ratios and the compass goal: ASHA within 1
point of FIFO's best test accuracy using <= 35 % of its epochs. Timings are comparable only within
one run on one machine (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import (  # noqa: E402 - run as a script from any directory
    REPO,
    load_line,
    prepare_toon,
    run_cli,
    table,
)


@dataclass(frozen=True)
class Variant:
    name: str
    settings: dict[str, Any]  # SpaceSettings fields changed from search_spaces/demo.py
    cli: list[str] = field(default_factory=list)  # extra `python -m study.run` options


VARIANTS = [Variant("asha", {"scheduler": "asha"}), Variant("fifo", {"scheduler": "fifo"})]
# what each column of the summary shows, in order
METRICS = {
    "epochs trained": "epochs",
    "tuning wall s": "wall_s",
    "best val acc": "best_val",
    "its test acc": "test_of_best",
    "best test acc (evaluated)": "best_test",
}
COMPASS_POINTS, COMPASS_EPOCHS = 0.01, 0.35

SPACE = '''"""{bench}'s variant {name!r}: the demo space with changed settings only."""
from __future__ import annotations

import dataclasses

from search_spaces import demo

space = demo.space
SETTINGS = dataclasses.replace(demo.SETTINGS, **{settings!r})
'''


def summarise(study: Path) -> dict[str, Any]:
    """One study's row: epochs, wall time, best val acc and the test accuracies."""
    import pandas as pd

    t = pd.read_parquet(study / "trials.parquet")
    meta = json.loads((study / "study.json").read_text())
    ok = t[t["status"].isin(["finished", "stopped"])]
    best = ok.loc[ok["val_acc_max"].idxmax()]
    tested = t["test_acc"].dropna()
    return {
        "trials": len(t),
        "epochs": int(t["epochs"].sum()),
        "stopped early": int((t["status"] == "stopped").sum()),
        "wall_s": float(meta.get("wall_s", float("nan"))),
        "best_val": float(best["val_acc_max"]),
        "test_of_best": float(best["test_acc"]) if pd.notna(best["test_acc"]) else float("nan"),
        "best_test": float(tested.max()) if len(tested) else float("nan"),
    }


def spread(values: list[float]) -> str:
    """mean (min-max) over seeds."""
    v = [x for x in values if x == x]
    if not v:
        return "-"
    digits = 0 if max(abs(x) for x in v) >= 100 else 3
    mean = statistics.fmean(v)
    return f"{mean:.{digits}f} ({min(v):.{digits}f}-{max(v):.{digits}f})"


def compare(
    rows: list[dict[str, Any]], baseline: str, compass: bool = True
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per-variant summary rows (mean and spread over seeds), and the ratio lines; with `compass`
    (early stopping against a baseline that trains every epoch) the compass goal's verdict."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["variant"], []).append(r)
    out = []
    for label, key in METRICS.items():
        out.append({"": label, **{v: spread([r[key] for r in rs]) for v, rs in by.items()}})
    means = {
        v: {k: statistics.fmean([r[k] for r in rs]) for k in METRICS.values()}
        for v, rs in by.items()
    }
    lines = []
    base = means[baseline]
    for v, m in means.items():
        if v == baseline:
            continue
        share = m["epochs"] / base["epochs"]
        gap = base["test_of_best"] - m["test_of_best"]
        lines.append(
            f"{v} / {baseline}: epochs {share:.2f}, wall {m['wall_s'] / base['wall_s']:.2f}, "
            f"test acc of the best trial {m['test_of_best']:.3f} vs {base['test_of_best']:.3f} "
            f"({-gap * 100:+.1f} points)"
        )
        if compass:
            met = gap <= COMPASS_POINTS and share <= COMPASS_EPOCHS
            lines.append(
                f"compass goal ({v} within {COMPASS_POINTS * 100:.0f} point of {baseline}'s test "
                f"acc with <= {COMPASS_EPOCHS:.0%} of its epochs): {'met' if met else 'not met'}"
            )
    return out, lines


def run_variants(
    bench: str,
    variants: list[Variant],
    baseline: str,
    a: argparse.Namespace,
    title: str,
    compass: bool = True,
) -> int:
    """Every (seed, variant) study, then the per-seed table and the side-by-side summary."""
    with tempfile.TemporaryDirectory() as tmp:
        work = (a.keep or Path(tmp)).resolve()
        prepare_toon(work / "data", a.toon_size)
        print(
            f"{len(variants)} variants x seeds {a.seeds}: {a.num_samples or 'demo'} trials x "
            f"{a.max_epochs or 'demo'} epochs, toon {a.toon_size}; {load_line()}",
            flush=True,
        )
        rows = []
        for seed in a.seeds:
            for v in variants:
                settings = {**v.settings, **({"image_size": a.image_size} if a.image_size else {})}
                space = work / f"{bench}_{v.name}.py"
                space.write_text(SPACE.format(bench=bench, name=v.name, settings=settings))
                name = f"{v.name}-{seed}"
                opts = [f"--{k.replace('_', '-')}" for k in ("num_samples", "max_epochs")]
                extra = [
                    x
                    for o, val in zip(opts, (a.num_samples, a.max_epochs), strict=True)
                    if val
                    for x in (o, str(val))
                ]
                run_cli(
                    [
                        "--space",
                        str(space),
                        "--data-dir",
                        str(work / "data"),
                        "--storage",
                        str(work / "studies"),
                        "--name",
                        name,
                        "--no-report",
                        "--seed",
                        str(seed),
                        *extra,
                        *v.cli,
                    ],
                    cwd=REPO,
                )
                row = {"variant": v.name, "seed": seed, **summarise(work / "studies" / name)}
                rows.append(row)
                print(f"  {name}: {row}", flush=True)
    print(table(rows, f"{title}: one row per study", digits=3))
    summary, lines = compare(rows, baseline, compass)
    print(table(summary, f"{title}: mean (min-max) over seeds {a.seeds}"))
    print("\n".join(lines))
    print(load_line())
    return 0


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=0, help="default: the demo's")
    p.add_argument("--max-epochs", type=int, default=0, help="default: the demo's")
    p.add_argument("--image-size", type=int, default=0, help="default: the demo's")
    p.add_argument("--toon-size", default="default", help="toon source: tiny|small|default|N")
    p.add_argument(
        "--quick",
        action="store_true",
        help="one seed, 4 trials x 3 epochs on toon small: checks the script runs",
    )
    p.add_argument("--keep", type=Path, help="work here and keep the studies")
    return p


def check(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.quick:
        a.seeds, a.num_samples, a.max_epochs, a.toon_size = [0], 4, 3, "small"
    for opt in ("num_samples", "max_epochs"):
        if getattr(a, opt) < 0:
            p.error(f"--{opt.replace('_', '-')} {getattr(a, opt)}: expected an integer >= 1")
    if a.image_size and a.image_size < 32:
        p.error(f"--image-size {a.image_size}: expected an integer >= 32")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    a = p.parse_args(argv)
    check(p, a)
    return run_variants("asha_vs_fifo", VARIANTS, "fifo", a, "ASHA vs FIFO on the demo space")


if __name__ == "__main__":
    sys.exit(main())
