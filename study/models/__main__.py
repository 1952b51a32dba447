"""``python -m study.models [NAME ...] [--num-classes 7] [--image-size 224]``: list models with
their parameter counts and forward cost at the given size; ``--list``: names and descriptions
only (no model is built)."""

from __future__ import annotations

import argparse
import sys


def describe(name: str, num_classes: int, image_size: int) -> dict[str, object]:
    """Plain facts about one model with default options (tested without printing)."""
    # here, not at the top: --help and --list need no torch
    from study.models import count_gflops, count_params, create_model, model_info

    model = create_model(name, num_classes)
    return {
        "name": name,
        "params": count_params(model),
        "gflops": count_gflops(model, image_size),
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
    parser.add_argument(
        "--list",
        action="store_true",
        help="print each model's name, description and default options, without building any "
        "(no parameter counts, no GFLOPs; fast)",
    )
    args = parser.parse_args(argv)
    if args.image_size < 32:
        parser.error(f"--image-size {args.image_size}: expected at least 32")
    from study.models import list_models, model_info  # the registry: names only, no torch

    if args.list:
        try:
            infos = [model_info(n) for n in args.names or list_models()]
        except ValueError as err:  # an unknown name: a message, not a traceback
            parser.error(str(err))
        for info in infos:
            options = ", ".join(f"{k}={v!r}" for k, v in info["options"].items())
            print(f"{info['name']}: {info['description']}\n    {options}")
        return 0
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
