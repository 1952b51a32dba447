"""Drawing primitives of the toon generator: point lists in face coordinates and a pen that
places them on the canvas (rotated, scaled), with flat or shaded fills."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
Colour = tuple[int, ...]  # RGB or RGBA (alpha blends)
Pts = list[tuple[float, float]]


@lru_cache(maxsize=8)
def grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.indices((s, s), dtype=np.float32)
    return xs, ys


def ell(x: float, y: float, a: float, b: float, n: int = 24,
         t0: float = 0.0, t1: float = 2 * math.pi) -> Pts:  # fmt: skip
    closed = t1 - t0 >= 2 * math.pi
    steps = [t0 + (t1 - t0) * i / (n if closed else n - 1) for i in range(n)]
    return [(x + a * math.cos(t), y + b * math.sin(t)) for t in steps]


def drop(x: float, y: float, r: float) -> Pts:
    return [(x, y - 2.2 * r)] + ell(x, y, r, r, 12, -math.pi / 6, 7 * math.pi / 6)


class Pen:
    """Draws in face coordinates (head radius 1, y down), rotated/scaled/placed on the canvas."""

    def __init__(self, canvas: Image.Image, cx: float, cy: float, r: float, angle: float):
        self.canvas, self.draw = canvas, ImageDraw.Draw(canvas, "RGBA")  # "RGBA": alpha blends
        self.cx, self.cy, self.r = cx, cy, r
        a = math.radians(angle)
        self.c, self.s = math.cos(a) * r, math.sin(a) * r

    def pts(self, xy: Pts) -> Pts:
        c, s, cx, cy = self.c, self.s, self.cx, self.cy
        return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in xy]

    def poly(self, xy: Pts, fill: Colour, edge: Colour | None = None, width: float = 0.03) -> None:
        p = self.pts(xy)
        self.draw.polygon(p, fill=fill)
        if edge is not None:
            self.draw.line(p + p[:1], fill=edge, width=self.w(width), joint="curve")

    def line(self, xy: Pts, fill: Colour, width: float) -> None:
        self.draw.line(self.pts(xy), fill=fill, width=self.w(width), joint="curve")

    def w(self, k: float) -> int:
        return max(1, round(k * self.r))

    def shaded(self, xy: Pts, colour: RGB, light: tuple[float, float] = (-0.35, -0.5)) -> None:
        """Fill with a radial light-to-dark gradient (the "3d" look) instead of a flat colour."""
        mask = Image.new("L", self.canvas.size, 0)
        ImageDraw.Draw(mask).polygon(self.pts(xy), fill=255)
        box = mask.getbbox()
        if box is None:
            return
        (lx, ly), (x0, y0, x1, y1) = self.pts([light])[0], box
        xs, ys = grid(self.canvas.size[0])
        d2 = ((xs[y0:y1, x0:x1] - lx) ** 2 + (ys[y0:y1, x0:x1] - ly) ** 2) / (1.8 * self.r) ** 2
        f = np.clip(1.25 - 0.75 * d2, 0.5, 1.3)[..., None]
        rgb = np.clip(np.array(colour, dtype=np.float32) * f, 0, 255).astype(np.uint8)
        self.canvas.paste(Image.fromarray(rgb), (x0, y0), mask.crop(box))
