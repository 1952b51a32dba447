"""Do the seed's two GoogLeNet presets leave chance on real manga? Val-acc curves per init.

    python benchmarks/presets_manga.py [--manga ../shared/data/manga] [--epochs 10] \\
        [--inits torch glorot] [--seeds 0]

The presets are googlenet_manga's two starting points, built through the space itself (so this
measures what a study runs: the seed's recipe, Adam 1e-3, batch 32, augmentation 0.5, dropout
0.4, class weights, no batch norm), at the space's 112 px, trained for the first --epochs of the
space's cosine schedule (max_epochs 60) through the trainable's own epoch loop
(benchmarks/recipe.py), once per --inits value. The manga folder is read in place and prepared
into a temporary directory (the study's stratified split, seed 0). --jobs runs several at once,
one process and one torch thread each (CPU seconds per epoch are those of one core). Prints each
run's val-acc curve, then one row per run: train loss and val acc after 1/3/10 epochs, best
val, the first epoch that beat guessing (study.chance) and CPU seconds per epoch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import REPO, load_line, table  # noqa: E402 - run as a script
from benchmarks.recipe import compare, load_data  # noqa: E402


def presets() -> dict[str, dict]:
    """The googlenet_manga starting points as the trial configs the space builds from them."""
    import optuna

    from search_spaces import googlenet_manga

    names = ("seed_googlenet", "seed_googlenet_extra_3_5")
    points = googlenet_manga.SETTINGS.starting_points
    return {
        n: googlenet_manga.space(optuna.trial.FixedTrial(dict(p)))
        for n, p in zip(names, points, strict=True)
    }


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manga", type=Path, default=REPO.parent / "shared" / "data" / "manga")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--inits", nargs="+", default=["glorot", "torch"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--jobs", type=int, default=1, help="runs at once, one process and one thread each"
    )
    a = p.parse_args(argv)
    if not a.manga.is_dir():
        p.error(f"--manga {a.manga}: expected the manga folder (one sub-folder per class)")

    from search_spaces import googlenet_manga
    from study.data.prepare import prepare

    size, horizon = googlenet_manga.SETTINGS.image_size, googlenet_manga.SETTINGS.max_epochs
    with tempfile.TemporaryDirectory(prefix="presets_manga_") as tmp:
        prepare("manga", str(a.manga), tmp)
        data, base = load_data("manga", tmp, size)
    print(
        f"manga at {size} px: train {len(data.train.labels)}, val {len(data.val.labels)}, "
        f"guessing {base.p0:.3f}; the first {a.epochs} of {horizon} epochs; {load_line()}",
        flush=True,
    )
    recipes = {f"init={i}": {"init": i} for i in a.inits}
    runs = [
        ({case: config}, {name: recipe}, [seed], data, base, a.epochs, horizon, [1, 3, 10], True)
        for case, config in presets().items()
        for name, recipe in recipes.items()
        for seed in a.seeds
    ]
    with ProcessPoolExecutor(a.jobs, get_context("spawn"), _one_thread) as pool:
        rows = [r for done in pool.map(compare, *zip(*runs, strict=True)) for r in done]
    print(table(rows, f"the seed's GoogLeNet presets on manga, {size} px", digits=3))
    print(load_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
