"""Decode once: a multi-trial Ray study on one node, then images decoded vs images in the data set.

    python benchmarks/decode_once.py [--toon-size small] [--num-samples 4] [--max-epochs 2]
                                     [--image-size 32] [--keep DIR]

Runs the real CLI (`python -m study.run --space <generated space file> --no-report`) on a freshly
prepared toon set with an empty cache. Every Python process the study starts (the driver and each
Ray worker) inherits a sitecustomize that wraps `study.data.decode.decode_rgb` and appends one
line per call (process, Ray task, image hash) to a log, so the count is measured, not assumed.
Goal: decodes == images in the data set (train and val once in the driver, test once in the
final evaluation, none in the trials).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import (  # noqa: E402 - run as a script from any directory
    REPO,
    decode_counter_env,
    load_line,
    prepare_toon,
    ratio,
    run_cli,
    table,
)

SPACE = '''"""decode_once.py's study: small CNNs, so the study is about data, not compute."""
from __future__ import annotations

from study.spaces.settings import SpaceSettings

SETTINGS = SpaceSettings(dataset="toon", description="decode-once benchmark", max_epochs={epochs},
                         grace_period=1, num_samples={samples}, image_size={size}, top_k=2,
                         sampler="random")


def space(trial):
    return {{"model": "vanilla_cnn", "width": 8, "depth": trial.suggest_int("depth", 2, 3),
            "lr": trial.suggest_float("lr", 1e-3, 3e-3, log=True), "batch_size": 32}}
'''


def count_decodes(log: Path, driver_pid: int, split_of: dict[str, str]) -> list[dict]:
    """Rows per split: decodes by process kind, distinct images, vs images in the data set."""
    recs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    in_set = Counter(split_of.values())
    rows = []
    for split in [*sorted(in_set), "all"]:
        mine = [r for r in recs if split == "all" or split_of.get(r["sha256"]) == split]
        where = Counter(
            "driver"
            if r["pid"] == driver_pid
            else "trial"
            if r["process"].startswith("ray::ImplicitFunc")
            else r["process"]
            for r in mine
        )
        n = sum(in_set.values()) if split == "all" else in_set[split]
        rows.append(
            {
                "split": split,
                "images in set": n,
                "decodes": len(mine),
                "decodes/images": ratio(len(mine), n),
                "distinct decoded": len({r["sha256"] for r in mine}),
                "in driver": where.pop("driver", 0),
                "in trials": where.pop("trial", 0),
                "elsewhere": ", ".join(f"{k}: {v}" for k, v in sorted(where.items())) or "-",
                "processes": len({r["pid"] for r in mine}),
            }
        )
    unknown = [r for r in recs if r["sha256"] not in split_of]
    if unknown:
        rows.append({"split": "not in the set", "decodes": len(unknown)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toon-size", default="small", help="toon source: tiny|small|default|N")
    p.add_argument("--num-samples", type=int, default=4)
    p.add_argument("--max-epochs", type=int, default=2)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--keep", type=Path, help="work here and keep the study (default: a temp dir)")
    a = p.parse_args(argv)
    for opt in ("num_samples", "max_epochs"):
        if getattr(a, opt) < 1:
            p.error(f"--{opt.replace('_', '-')} {getattr(a, opt)}: expected an integer >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        work = a.keep or Path(tmp)
        return run(a, work.resolve())


def run(a: argparse.Namespace, work: Path) -> int:
    data_dir = work / "data"
    if (data_dir / "toon" / "cache").exists():
        raise SystemExit(
            f"error: {data_dir}/toon/cache exists: decodes would not be counted; "
            "use an empty --keep directory"
        )
    ds = prepare_toon(data_dir, a.toon_size)  # prepare validates images; it never decodes them
    space = work / "decode_once_space.py"
    space.write_text(SPACE.format(epochs=a.max_epochs, samples=a.num_samples, size=a.image_size))
    log = work / "decodes.jsonl"
    log.unlink(missing_ok=True)
    env = decode_counter_env(work / "site", log)
    print(
        f"study: {a.num_samples} trials x {a.max_epochs} epochs at {a.image_size} px on toon "
        f"{a.toon_size}; {load_line()}",
        flush=True,
    )
    wall, pid, procs = run_cli(
        [
            "--space",
            str(space),
            "--data-dir",
            str(data_dir),
            "--storage",
            str(work / "studies"),
            "--name",
            "decode-once",
            "--no-report",
            "--seed",
            "0",
            "--cpus-per-trial",
            str(a.cpus_per_trial),
        ],
        cwd=REPO,
        env=env,
    )
    meta = ds.table()
    rows = count_decodes(log, pid, dict(zip(meta["sha256"], meta["split"], strict=True)))
    import pandas as pd

    trials = pd.read_parquet(work / "studies" / "decode-once" / "trials.parquet")
    caches = sorted(p.name for p in (ds.root / "cache").glob("*.npy"))
    print(
        table(
            rows,
            f"Images decoded vs images in the data set ({len(trials)} trials, "
            f"{int(trials['epochs'].sum())} epochs, study wall {wall:.0f} s)",
        )
    )
    print(f"cache files: {', '.join(caches)}")
    # the test evaluation is a Ray task of its own only on a cluster or with a GPU; on one CPU
    # node it runs in the driver (study.evaluation.test_split.evaluates_here), inside the driver's
    # peak
    task = procs.peak("ray::evaluate_on_test")
    evaluation = "in the driver" if task != task else f"{task:,.0f}"  # NaN: no such process
    print(
        f"peak RSS, MiB: a trial process {procs.peak('ray::ImplicitFunc'):,.0f}; the test "
        f"evaluation {evaluation}; the driver {procs.peak():,.0f}"
    )
    print(load_line())
    total = rows[-1] if rows[-1]["split"] == "all" else rows[-2]
    return 0 if total["decodes"] == total["images in set"] else 1


if __name__ == "__main__":
    sys.exit(main())
