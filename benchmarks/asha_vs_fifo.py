"""ASHA vs no early stopping (FIFO) on the demo space: best val acc and the epochs it cost.

    python benchmarks/asha_vs_fifo.py [--quick] [--num-samples 8] [--max-epochs 6]
                                      [--toon-size small] [--image-size 64] [--seed 0]

Each variant is one real study (`python -m study.run --space <generated file>`) of the demo space
with only its SpaceSettings changed, same seed and samples, so the sampler proposes the same
configurations (TPE's first trials are its random start-up); the table has one column per variant
and the ratio of each to the FIFO baseline. Timings are only comparable from one run on one
machine: the two studies run one after the other here.
"""

from __future__ import annotations

import argparse
import json
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
    ratio,
    run_cli,
    table,
)


@dataclass(frozen=True)
class Variant:
    name: str
    settings: dict[str, Any]  # SpaceSettings fields changed from search_spaces/demo.py
    cli: list[str] = field(default_factory=list)  # extra `python -m study.run` options


BASELINE = "fifo"
# One column each. A third one goes here, e.g. Ray's stock OptunaSearch vs ours that tells Optuna
# about ASHA-stopped trials as PRUNED: Variant("asha+pruned", {...the setting that selects it})
VARIANTS = [
    Variant("asha", {"scheduler": "asha"}),
    Variant(BASELINE, {"scheduler": "fifo"}),
]

SPACE = '''"""asha_vs_fifo.py's variant {name!r}: the demo space with changed settings only."""
from __future__ import annotations

import dataclasses

from search_spaces import demo

space = demo.space
SETTINGS = dataclasses.replace(demo.SETTINGS, **{settings!r})
'''


def summarise(study: Path, wall: float, trial_rss: float) -> dict[str, Any]:
    import pandas as pd

    t = pd.read_parquet(study / "trials.parquet")
    meta = json.loads((study / "study.json").read_text())
    best = t.loc[t["val_acc_max"].idxmax()]
    return {"trials": len(t), "best val acc": float(best["val_acc_max"]),
            "its test acc": float(best["test_acc"]) if pd.notna(best["test_acc"]) else None,
            "epochs trained": int(t["epochs"].sum()),
            "trials stopped early": int((t["status"] == "stopped").sum()),
            "tuning wall s": meta.get("wall_s", float("nan")), "study wall s": wall,
            "trial peak RSS MiB": trial_rss}


def cell(v: Any) -> str:
    """Rows mix counts, accuracies and seconds: format each value, not each column."""
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return str(v) if isinstance(v, int) else f"{v:,.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-samples", type=int, default=12, help="the demo's")
    p.add_argument("--max-epochs", type=int, default=9, help="the demo's")
    p.add_argument("--toon-size", default="small", help="toon source: tiny|small|default|N")
    p.add_argument("--image-size", type=int, default=64, help="the demo's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--quick", action="store_true",
                   help="6 trials x 4 epochs at 48 px on toon small: a few minutes on 2 cores")
    p.add_argument("--keep", type=Path, help="work here and keep the studies")
    a = p.parse_args(argv)
    if a.quick:
        a.num_samples, a.max_epochs, a.image_size = 6, 4, 48
    for opt in ("num_samples", "max_epochs"):
        if getattr(a, opt) < 1:
            p.error(f"--{opt.replace('_', '-')} {getattr(a, opt)}: expected an integer >= 1")
    if a.image_size < 32:
        p.error(f"--image-size {a.image_size}: expected an integer >= 32")
    with tempfile.TemporaryDirectory() as tmp:
        work = (a.keep or Path(tmp)).resolve()
        prepare_toon(work / "data", a.toon_size)
        print(f"{len(VARIANTS)} studies of {a.num_samples} trials x {a.max_epochs} epochs at "
              f"{a.image_size} px on toon {a.toon_size}, seed {a.seed}; {load_line()}", flush=True)
        cols: dict[str, dict[str, Any]] = {}
        for v in VARIANTS:
            space = work / f"demo_{v.name.replace('+', '_')}.py"
            space.write_text(SPACE.format(name=v.name,
                                          settings={**v.settings, "image_size": a.image_size}))
            name = f"demo-{v.name}"
            wall, _, procs = run_cli(
                ["--space", str(space), "--data-dir", str(work / "data"),
                 "--storage", str(work / "studies"), "--name", name, "--no-report",
                 "--seed", str(a.seed), "--num-samples", str(a.num_samples),
                 "--max-epochs", str(a.max_epochs), "--cpus-per-trial", str(a.cpus_per_trial),
                 *v.cli], cwd=REPO)
            cols[v.name] = summarise(work / "studies" / name, wall, procs.peak("ray::ImplicitFunc"))
    rows = []
    for metric in cols[BASELINE]:
        row: dict[str, Any] = {"": metric, **{v: cell(c[metric]) for v, c in cols.items()}}
        for v in cols:
            if v != BASELINE:
                row[f"{v}/{BASELINE}"] = cell(ratio(cols[v][metric], cols[BASELINE][metric]))
        rows.append(row)
    print(table(rows, f"ASHA vs FIFO on the demo space ({a.num_samples} trials x "
                      f"{a.max_epochs} epochs, {a.image_size} px, toon {a.toon_size})"))
    print(load_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
