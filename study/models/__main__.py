"""``python -m study.models [NAME ...] [--num-classes 7] [--image-size 224]``: list models with
their parameter counts and forward cost at the given size."""

from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import count_params, create_model, list_models, model_info


def describe(name: str, num_classes: int, image_size: int) -> dict[str, object]:
    """Plain facts about one model with default options (tested without printing)."""
    model = create_model(name, num_classes).eval()
    x = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return {
        "name": name,
        "params": count_params(model),
        "gflops": counter.get_total_flops() / 1e9,
        "description": model_info(name)["description"],
    }


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog or "python -m study.models", description=__doc__)
    parser.add_argument(
        "names", nargs="*", help="models to show (default: all registered; timm/<arch> also works)"
    )
    parser.add_argument(
        "--num-classes", type=int, default=7, help="outputs of the classifier head (default 7)"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=224,
        help="input side in pixels for the GFLOPs count (default 224, at least 32)",
    )
    args = parser.parse_args(argv)
    if args.image_size < 32:
        parser.error(f"--image-size {args.image_size}: expected at least 32")
    try:
        rows = [describe(n, args.num_classes, args.image_size) for n in args.names or list_models()]
    except ValueError as err:  # unknown model or bad --num-classes: a message, not a traceback
        parser.error(str(err))
    width = max(len(str(r["name"])) for r in rows)
    print(
        f"{'name':<{width}}  {'params':>11}  {'GFLOPs':>7}  description"
        f"  ({args.num_classes} classes, {args.image_size} px)"
    )
    for r in rows:
        print(f"{r['name']:<{width}}  {r['params']:>11,}  {r['gflops']:>7.2f}  {r['description']}")
    if not args.names:
        print("any timm model also works as timm/<arch>, e.g. timm/resnet18")
    return 0


if __name__ == "__main__":
    sys.exit(main())
