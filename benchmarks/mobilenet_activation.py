"""Which activation were the shipped MobileNetV1 x0.25 weights trained with: ReLU or LeakyReLU(0.1)?

    python benchmarks/mobilenet_activation.py [--images ../shared/data/manga] [--limit 365]

The weights' source repository has both versions of this network, and the checkpoint does not say
(activations have no parameters). Without ImageNet at hand, the batch-norm layers tell: each BN
stored the running mean and variance of its input *as seen in training*, and every BN after the
first receives the output of an activation. Feed natural images through both variants and
compare, per BN layer, the batch statistics of its input with the stored ones:
  mean_z    mean over channels of |batch mean - running mean| / sqrt(running var)
  log_var   mean over channels of |log(batch var / running var)|
The variant the weights were trained with reproduces the stored statistics better, layer after
layer (the images' own domain shift affects both variants alike; the first BN, fed by the image
itself, is the same for both and shows that shift). Also printed: the ImageNet predictions'
confidence (mean max-probability) and how often the two variants agree on the top-1 class.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from study.data.decode import decode_rgb, resize_square
from study.models.backbones import MOBILENET_FILE, MobileNetV1, find_weights, read_state_dict

# a stored running variance this small (5.6e-45 in the file: float32's denormal floor) means the
# BN's input channel was exactly constant through training: the unit before it was dead
DEAD_VAR = 1e-30
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_images(root: Path, limit: int, size: int = 224) -> torch.Tensor:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    files = files[:: max(1, len(files) // limit)][:limit]
    arr = np.stack([resize_square(decode_rgb(p.read_bytes()), size) for p in files])
    x = torch.from_numpy(arr).float() / 255
    return (x - IMAGENET_MEAN) / IMAGENET_STD


def with_activation(model: nn.Module, make) -> nn.Module:
    """A copy of `model` with every ReLU replaced by `make()`."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, make())
    return model


@torch.no_grad()
def bn_statistics(model: nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """Per BN layer: how far the batch statistics of its input are from the stored ones."""
    rows = []

    def hook(name: str, bn: nn.BatchNorm2d):
        def fn(_module, inputs, _output):
            t = inputs[0].double()
            mean, var = t.mean((0, 2, 3)), t.var((0, 2, 3))
            rm, rv = bn.running_mean.double(), bn.running_var.double()
            dead = rv < DEAD_VAR
            rows.append(
                {
                    "layer": name,
                    "dead": int(dead.sum()),
                    "dead_batch_var": float(var[dead].max()) if dead.any() else float("nan"),
                    "mean_z": float(((mean - rm).abs() / rv.sqrt().clamp_min(1e-6)).mean()),
                    "log_var": float(
                        (var.clamp_min(1e-12) / rv.clamp_min(1e-12)).log().abs().mean()
                    ),
                }
            )

        return fn

    handles = [
        m.register_forward_hook(hook(n, m))
        for n, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    model.eval()(x)
    for h in handles:
        h.remove()
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "manga"
    p.add_argument("--images", type=Path, default=shared, help="a folder of natural-ish images")
    p.add_argument("--limit", type=int, default=365)
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    path = find_weights(MOBILENET_FILE)
    relu = MobileNetV1(1000)
    relu.load_state_dict(read_state_dict(path))
    leaky = with_activation(relu, lambda: nn.LeakyReLU(0.1))
    x = load_images(a.images, a.limit)
    print(f"weights: {path}\nimages: {len(x)} from {a.images}, 224 px, ImageNet mean/std\n")
    s_relu, s_leaky = bn_statistics(relu, x), bn_statistics(leaky, x)
    table = pd.DataFrame(
        {
            "layer": s_relu["layer"],
            "mean_z relu": s_relu["mean_z"],
            "mean_z leaky0.1": s_leaky["mean_z"],
            "log_var relu": s_relu["log_var"],
            "log_var leaky0.1": s_leaky["log_var"],
        }
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    after = table.iloc[1:]  # the first BN sees the image itself: the same for both
    wins = {
        "relu": int(
            (
                (after["mean_z relu"] < after["mean_z leaky0.1"])
                & (after["log_var relu"] < after["log_var leaky0.1"])
            ).sum()
        ),
        "leaky0.1": int(
            (
                (after["mean_z leaky0.1"] < after["mean_z relu"])
                & (after["log_var leaky0.1"] < after["log_var relu"])
            ).sum()
        ),
    }
    print(f"\nBN layers after an activation: {len(after)}")
    for name in ("relu", "leaky0.1"):
        print(
            f"  {name:9s} mean mean_z {after[f'mean_z {name}'].mean():.3f}  "
            f"mean log_var {after[f'log_var {name}'].mean():.3f}  "
            f"layers where it fits better on both: {wins[name]}"
        )
    dead = s_relu[s_relu["dead"] > 0]
    print(
        f"\nchannels the weights say were exactly constant in training (running_var < "
        f"{DEAD_VAR:g}): {int(dead['dead'].sum())} in {len(dead)} BN layers; their largest "
        "batch variance on these images:"
    )
    print(
        pd.DataFrame(
            {
                "layer": dead["layer"],
                "channels": dead["dead"],
                "relu": dead["dead_batch_var"],
                "leaky0.1": s_leaky.loc[dead.index, "dead_batch_var"],
            }
        ).to_string(index=False, float_format=lambda v: f"{v:.3g}")
    )
    print(
        "  (a ReLU unit that is never positive outputs exactly 0, so the next depthwise conv "
        "sees a constant; a LeakyReLU(0.1) unit never does)"
    )
    with torch.no_grad():
        p_relu, p_leaky = relu(x).softmax(1), leaky(x).softmax(1)
    agree = float((p_relu.argmax(1) == p_leaky.argmax(1)).float().mean())
    print(
        f"\nImageNet top-1 confidence (mean max prob): relu {p_relu.max(1).values.mean():.3f}, "
        f"leaky0.1 {p_leaky.max(1).values.mean():.3f}; top-1 agreement {agree:.3f}"
    )
    better = min(("relu", "leaky0.1"), key=lambda n: after[f"mean_z {n}"].mean())
    print(f"\nverdict: the weights fit {better} (lower BN-statistics mismatch)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
