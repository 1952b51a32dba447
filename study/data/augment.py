"""Augmentation on uint8 tensor batches, per sample, vectorised (on the GPU when the batch is).

One affine warp does flip + random-resized-crop + rotation for the whole batch at once, and colour
jitter is a per-sample multiply, so augmenting never becomes the bottleneck of a trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5  # probability of a horizontal flip
    crop: float = 0.0  # random resized crop: area scale drawn from [1 - crop, 1]
    rotation: float = 0.0  # max degrees either way
    color: float = 0.0  # brightness/contrast/saturation jitter: factors in [1 - color, 1 + color]

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("flip", 0, 1),
            ("crop", 0, 0.9),
            ("rotation", 0, 180),
            ("color", 0, 1),
        ):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ValueError(f"augmentation {name}={v}: expected a value in [{lo}, {hi}]")

    @classmethod
    def from_strength(cls, strength: float) -> AugmentConfig:
        """One knob for spaces: 0 = flips only, 1 = strong (as the seed's ImageDataGenerator)."""
        if not 0 <= strength <= 1:
            raise ValueError(f"aug_strength={strength}: expected a value in [0, 1]")
        return cls(flip=0.5, crop=0.4 * strength, rotation=20 * strength, color=0.4 * strength)

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown augmentation option(s) {sorted(unknown)}; expected {sorted(known)}"
            )
        return cls(**d)


class Augment:
    """uint8 N×3×H×W in, normalised float N×3×H×W out. `train=False` only normalises."""

    def __init__(self, cfg: AugmentConfig, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.cfg = cfg
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor, train: bool, generator: torch.Generator | None = None):
        x = x.float().div_(255.0)
        if train:
            x = self._geometry(x, generator)
            x = self._colour(x, generator)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x - mean) / std

    def _rand(self, n: int, g: torch.Generator | None) -> torch.Tensor:
        return torch.rand(n, generator=g)

    def _geometry(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        c, n = self.cfg, x.shape[0]
        flip = torch.where(self._rand(n, g) < c.flip, -1.0, 1.0)
        scale = torch.sqrt(1 - c.crop * self._rand(n, g))  # side fraction of the crop
        angle = (self._rand(n, g) * 2 - 1) * math.radians(c.rotation)
        # centre of the crop moves only as far as the crop leaves room
        tx = (self._rand(n, g) * 2 - 1) * (1 - scale)
        ty = (self._rand(n, g) * 2 - 1) * (1 - scale)
        if c.flip == 0 and c.crop == 0 and c.rotation == 0:
            return x
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack(
            [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
        ).to(x)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )

    def _colour(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        c, n = self.cfg.color, x.shape[0]
        if c == 0:
            return x
        b, k, s = (1 + (self._rand(n, g) * 2 - 1) * c for _ in range(3))
        b, k, s = (v.view(n, 1, 1, 1).to(x) for v in (b, k, s))
        x = x * b
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * k + mean
        gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).expand_as(x)
        x = (x - gray) * s + gray
        return x.clamp_(0, 1)
