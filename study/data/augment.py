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


@dataclass(frozen=True)
class AugmentDraw:
    """The random parameters of one batch, one row per image. Drawn once per batch and sliced,
    so a batch augmented in micro-batches gets exactly the images it would have got whole."""

    flip: torch.Tensor
    scale: torch.Tensor
    angle: torch.Tensor
    tx: torch.Tensor
    ty: torch.Tensor
    colour: torch.Tensor | None  # n x 3 (brightness, contrast, saturation) or None

    def __getitem__(self, rows: slice) -> AugmentDraw:
        return AugmentDraw(*(None if v is None else v[rows] for v in vars(self).values()))

    def to(self, device: torch.device) -> AugmentDraw:
        """One pinned, non-blocking copy to a GPU. A plain `.to(cuda)` of a CPU tensor waits for
        the GPU to finish its queue, so a few of them per step would stall every step."""
        if device.type != "cuda":
            return self
        cols = [self.flip, self.scale, self.angle, self.tx, self.ty]
        packed = torch.stack(cols, 1)
        if self.colour is not None:
            packed = torch.cat([packed, self.colour], 1)
        packed = packed.pin_memory().to(device, non_blocking=True)
        colour = packed[:, 5:] if self.colour is not None else None
        return AugmentDraw(*packed[:, :5].unbind(1), colour)


class Augment:
    """uint8 N×3×H×W in, normalised float N×3×H×W out. `train=False` only normalises."""

    def __init__(self, cfg: AugmentConfig, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.cfg = cfg
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _mean_std(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # copied once per device: a CPU-to-GPU copy per batch would wait for the GPU each time
        if device not in self._on:
            self._on[device] = (self.mean.to(device), self.std.to(device))
        return self._on[device]

    def __call__(
        self,
        x: torch.Tensor,
        train: bool,
        generator: torch.Generator | None = None,
        draw: AugmentDraw | None = None,
    ) -> torch.Tensor:
        x = x.float().div_(255.0)
        if train:
            d = draw if draw is not None else self.draw(x.shape[0], generator).to(x.device)
            x = self._colour(self._geometry(x, d), d)
        mean, std = self._mean_std(x.device)
        return (x - mean) / std

    def draw(self, n: int, g: torch.Generator | None = None) -> AugmentDraw:
        """Random parameters for n images (on the CPU generator: same stream on any device)."""
        c = self.cfg

        def rand() -> torch.Tensor:
            return torch.rand(n, generator=g)

        flip = torch.where(rand() < c.flip, -1.0, 1.0)
        scale = torch.sqrt(1 - c.crop * rand())  # side fraction of the crop
        angle = (rand() * 2 - 1) * math.radians(c.rotation)
        # centre of the crop moves only as far as the crop leaves room
        tx = (rand() * 2 - 1) * (1 - scale)
        ty = (rand() * 2 - 1) * (1 - scale)
        colour = None
        if c.color:
            colour = torch.stack([1 + (rand() * 2 - 1) * c.color for _ in range(3)], 1)
        return AugmentDraw(flip, scale, angle, tx, ty, colour)

    def _geometry(self, x: torch.Tensor, d: AugmentDraw) -> torch.Tensor:
        c = self.cfg
        if c.flip == 0 and c.crop == 0 and c.rotation == 0:
            return x
        cos, sin = torch.cos(d.angle) * d.scale, torch.sin(d.angle) * d.scale
        theta = torch.stack(
            [torch.stack([cos * d.flip, -sin, d.tx], 1), torch.stack([sin * d.flip, cos, d.ty], 1)],
            1,
        ).to(x)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )

    def _colour(self, x: torch.Tensor, d: AugmentDraw) -> torch.Tensor:
        if d.colour is None:
            return x
        n = x.shape[0]
        b, k, s = (d.colour[:, i].view(n, 1, 1, 1).to(x) for i in range(3))
        x = x * b
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * k + mean
        gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).expand_as(x)
        x = (x - gray) * s + gray
        return x.clamp_(0, 1)
