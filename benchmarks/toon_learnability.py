"""Is the embedded "toon" set learnable but not trivial? Train a small plain CNN on CPU and see.

    python benchmarks/toon_learnability.py [--num-images N] [--image-size 64] [--epochs E]
                                           [--seed S]

Generates the set (timing it), splits it 70/15/15 stratified by emotion, trains a 4-block CNN
with Adam on 2 CPU threads and prints train/val/test accuracy per epoch next to chance level.
Also writes a contact sheet (7 emotions x 8 examples) to --sheet for a person to look at.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from study.data import toon


def stratified_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_tr, n_va = round(0.7 * len(idx)), round(0.15 * len(idx))
        for part, chunk in zip(parts, np.split(idx, [n_tr, n_tr + n_va]), strict=True):
            part.extend(chunk.tolist())
    return tuple(np.array(sorted(p)) for p in parts)  # type: ignore[return-value]


def small_cnn(num_classes: int) -> nn.Module:
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(
        block(3, 16), block(16, 32), block(32, 64), block(64, 96),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(96, num_classes),
    )  # fmt: skip


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return float((pred == y).float().mean())


def contact_sheet(images: list[toon.ToonImage], path: Path, per_class: int = 8) -> None:
    """One row per emotion, `per_class` examples each (cycling through the characters)."""
    rows = {e: [im for im in images if im.label == e][:per_class] for e in toon.EMOTIONS}
    size = Image.open(io.BytesIO(images[0].png)).size[0]
    sheet = Image.new("RGB", (size * per_class, size * len(rows)), "white")
    for r, emotion in enumerate(toon.EMOTIONS):
        for c, im in enumerate(rows[emotion]):
            sheet.paste(Image.open(io.BytesIO(im.png)).convert("RGB"), (c * size, r * size))
    sheet.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-images", type=int, default=toon.SIZES["default"])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--sheet", type=Path, default=Path("/tmp/toon_contact_sheet.png"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    images = list(toon.generate(args.num_images, seed=args.seed, image_size=args.image_size))
    gen_s = time.perf_counter() - start
    print(f"generated {len(images)} images at {args.image_size}px in {gen_s:.1f}s "
          f"({len(images) / gen_s:.0f} img/s)")  # fmt: skip
    contact_sheet(images, args.sheet)
    print(f"contact sheet: {args.sheet}")

    pixels = np.stack([np.asarray(Image.open(io.BytesIO(im.png)).convert("RGB")) for im in images])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)
    y = torch.tensor([toon.EMOTIONS.index(im.label) for im in images])
    tr, va, te = (torch.from_numpy(i) for i in stratified_split(y.numpy(), args.seed))
    print(f"split: train {len(tr)} / val {len(va)} / test {len(te)}; "
          f"chance {1 / len(toon.EMOTIONS):.1%}")  # fmt: skip

    model = small_cnn(len(toon.EMOTIONS))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, args.lr, total_steps=args.epochs * -(-len(tr) // args.batch_size)
    )
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        for b in tr[torch.randperm(len(tr))].split(args.batch_size):
            xb = x[b]
            flip = torch.rand(len(b)) < 0.5  # mirror: emotions are left/right symmetric
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            opt.zero_grad()
            loss_fn(model(xb), y[b]).backward()
            opt.step()
            sched.step()
        accs = [accuracy(model, x[i], y[i]) for i in (tr, va, te)]
        print(f"epoch {epoch:2d}  train {accs[0]:.1%}  val {accs[1]:.1%}  test {accs[2]:.1%}  "
              f"({time.perf_counter() - t0:.1f}s)")  # fmt: skip
    print(f"chance {1 / len(toon.EMOTIONS):.1%}; total {time.perf_counter() - start:.1f}s")
    # where the errors go: the designed overlaps are anger/disgust, fear/surprise, neutral/sadness
    model.eval()
    with torch.no_grad():
        pred = model(x[te]).argmax(1)
    conf = torch.zeros(len(toon.EMOTIONS), len(toon.EMOTIONS), dtype=torch.long)
    conf.index_put_((y[te], pred), torch.ones_like(pred), accumulate=True)
    print("test confusion (rows: true, columns: predicted)")
    print("          " + " ".join(f"{e[:7]:>7}" for e in toon.EMOTIONS))
    for e, row in zip(toon.EMOTIONS, conf.tolist(), strict=True):
        print(f"{e:>9} " + " ".join(f"{v:7d}" for v in row))


if __name__ == "__main__":
    main()
