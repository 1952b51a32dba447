"""Embedded, procedurally drawn cartoon faces ("toon"), so the whole tool runs with no download.

Image `index` is a pure function of (seed, index, image_size): its own rng seeded from
(seed, index), PIL drawing at 2-4x supersampling, LANCZOS downsampling, no fonts or system state.
Array maths uses only +, -, *, / (no SIMD-dependent transcendentals), so the PNG bytes depend only
on the Pillow build. Emotion = index % 7, character = (index // 7) % 6: any 42 consecutive images
hold every (character, emotion) pair once.

Difficulty comes from the cues, not from noise: each emotion pulls shared face parameters (brows,
lids, eye openness, mouth curve/opening/asymmetry) away from neutral by a random intensity plus
jitter, so weak anger looks like disgust, fear like surprise, weak sadness like neutral; optional
cues (tears, blush, sweat, anger vein, gloom lines) are likely for their emotion, rare elsewhere.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from study.data.sets.ferg import FERG_EMOTIONS
from study.data.sources import SourceError, SourceItem
from study.data.toon_pen import RGB, Pen, Pts, drop, ell, grid

# toon uses FERG-DB's classes, so a model trained on one is evaluated on the other unchanged
EMOTIONS: tuple[str, ...] = FERG_EMOTIONS


@dataclass(frozen=True)
class Character:
    name: str
    style: str  # "anime": outlines, big eyes, flat fill; "3d": shading, small eyes, no outlines
    width: float  # head half-width in face units (head half-height ~1)
    height: float
    squareness: float  # superellipse exponent: 2 = ellipse, larger = boxier jaw
    chin: float  # 0 = round chin, ~0.4 = pointed
    skin: RGB  # given as "#rrggbb" in _CAST, stored as a tuple
    hair: RGB
    iris: RGB
    hair_style: str  # "bob" | "long" | "spiky" | "short" | "bun"


_CAST_SPEC = (  # name, style, width, height, squareness, chin, skin, hair, iris, hair style
    ("aiko", "anime", 0.9, 1.04, 2.0, 0.30, "#ffe0c8", "#e86ea5", "#7d46be", "bob"),
    ("ren", "anime", 0.88, 1.06, 2.0, 0.40, "#e2b694", "#2d375f", "#cd9123", "spiky"),
    ("mika", "anime", 0.98, 1.0, 2.0, 0.12, "#ffecde", "#f5d069", "#37a05f", "long"),
    ("bolt", "3d", 1.04, 0.97, 3.4, 0.0, "#a06c4c", "#231c1c", "#5f3a20", "short"),
    ("pip", "3d", 1.0, 0.95, 2.2, 0.0, "#fad0b2", "#de7028", "#3c78dc", "bun"),
    ("toma", "3d", 0.9, 1.08, 2.7, 0.1, "#cda57d", "#cdcdd7", "#697682", "spiky"),
)
_CAST = tuple(
    Character(*c[:6], *(ImageColor.getrgb(h)[:3] for h in c[6:9]), c[9])  # type: ignore[arg-type]
    for c in _CAST_SPEC
)
CHARACTERS: tuple[str, ...] = tuple(c.name for c in _CAST)
# Multiples of 42 keep every (character, emotion) pair equally frequent.
SIZES: dict[str, int] = {"tiny": 84, "small": 840, "default": 3360}

AMBIGUOUS_FRACTION = 0.05  # faces drawn at near-zero intensity: honestly hard to call

# Face parameters, neutral values (face units: head radius 1, y grows downwards).
_NEUTRAL = {
    "brow_y": 0.0, "brow_tilt": 0.0, "brow_arch": 0.04, "brow_asym": 0.0,
    "eye_open": 1.0, "lid": 0.0, "eye_asym": 0.0, "pupil": 1.0, "gaze": 0.0,
    "mouth_curve": 0.0, "mouth_open": 0.0, "mouth_w": 0.22, "mouth_asym": 0.0,
    "mouth_wave": 0.0, "mouth_round": 0.0,
}  # fmt: skip
# Where each emotion pulls those parameters at full intensity (FERG / FACS-style cues).
_TARGET: dict[str, dict[str, float]] = {
    "anger": {"brow_y": 0.08, "brow_tilt": 0.13, "brow_arch": -0.03, "eye_open": 0.8, "lid": 0.45,
              "mouth_curve": -0.6, "mouth_w": 0.26},
    "disgust": {"brow_y": 0.05, "brow_tilt": 0.05, "brow_asym": 0.09, "eye_open": 0.65,
                "eye_asym": 0.3, "lid": 0.2, "mouth_curve": -0.35, "mouth_asym": 0.9,
                "mouth_wave": 0.8, "mouth_w": 0.24},
    "fear": {"brow_y": -0.08, "brow_tilt": -0.11, "eye_open": 1.3, "pupil": 0.5,
             "mouth_curve": -0.3, "mouth_open": 0.1, "mouth_wave": 0.9, "mouth_round": 0.2},
    "joy": {"brow_y": -0.04, "brow_arch": 0.1, "eye_open": 0.85, "mouth_curve": 1.0,
            "mouth_open": 0.16, "mouth_w": 0.3},
    "neutral": {},
    "sadness": {"brow_tilt": -0.12, "brow_arch": 0.0, "eye_open": 0.75, "lid": -0.45, "gaze": 0.6,
                "mouth_curve": -0.7, "mouth_w": 0.2},
    "surprise": {"brow_y": -0.12, "brow_arch": 0.12, "eye_open": 1.4, "pupil": 0.6,
                 "mouth_open": 0.22, "mouth_w": 0.12, "mouth_round": 1.0},
}  # fmt: skip
_JITTER = {
    "brow_y": 0.025, "brow_tilt": 0.035, "brow_arch": 0.025, "brow_asym": 0.02, "eye_open": 0.08,
    "lid": 0.1, "eye_asym": 0.05, "pupil": 0.08, "gaze": 0.2, "mouth_curve": 0.15,
    "mouth_open": 0.025, "mouth_w": 0.03, "mouth_asym": 0.1, "mouth_wave": 0.1, "mouth_round": 0.1,
}  # fmt: skip
_LIMITS = {
    "eye_open": (0.35, 1.6), "pupil": (0.35, 1.2), "gaze": (-1.0, 1.0), "mouth_open": (0, 0.35),
    "mouth_w": (0.08, 0.4), "mouth_wave": (0, 1.2), "mouth_round": (0, 1),
}  # fmt: skip
# Optional cues: probability at full intensity; every cue also shows up at _CUE_BASE elsewhere.
_CUES = ("closed", "teeth", "tongue", "tears", "blush", "sweat", "vein", "gloom")
_CUE_BASE = 0.03
_CUE_P: dict[str, dict[str, float]] = {
    "anger": {"teeth": 0.5, "vein": 0.45, "blush": 0.3},
    "disgust": {"teeth": 0.35, "gloom": 0.35, "sweat": 0.2, "tongue": 0.15},
    "fear": {"sweat": 0.6, "gloom": 0.35, "tears": 0.15, "teeth": 0.3},
    "joy": {"closed": 0.5, "blush": 0.6, "tongue": 0.5},
    "neutral": {"blush": 0.1},
    "sadness": {"tears": 0.65, "gloom": 0.2},
    "surprise": {"sweat": 0.25, "blush": 0.1},
}

_INK = (40, 28, 40)
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class ToonImage:
    name: str  # unique relative id, e.g. "aiko/joy/aiko_joy_00012.png"
    label: str  # one of EMOTIONS
    group: str  # character name
    png: bytes  # PNG-encoded RGB image, image_size x image_size


def generate(num_images: int, seed: int = 0, image_size: int = 128) -> Iterator[ToonImage]:
    """Images 0..num_images-1 of the set for `seed`; arguments are checked before any drawing."""
    _check_int("num_images", num_images, 1, None)
    _check_args(seed, image_size)
    return (render(i, seed, image_size) for i in range(num_images))


def iter_items(size: str | int, seed: int, image_size: int = 128) -> Iterator[SourceItem]:
    """The embedded synthetic set; `size` is a name from SIZES or a number of images."""
    if isinstance(size, str) and not size.isdigit():
        if size not in SIZES:
            raise SourceError(
                f"toon source {size!r}: expected one of {', '.join(SIZES)} or a number"
            )
        n = SIZES[size]
    else:
        n = int(size)
    for img in generate(n, seed=seed, image_size=image_size):
        yield SourceItem(path=img.name, label=img.label, group=img.group, read=lambda b=img.png: b)


def render(index: int, seed: int = 0, image_size: int = 128) -> ToonImage:
    """Image number `index` of the set for `seed` (random access; `generate` loops over this)."""
    _check_int("index", index, 0, None)
    _check_args(seed, image_size)
    emotion = EMOTIONS[index % len(EMOTIONS)]
    char = _CAST[(index // len(EMOTIONS)) % len(_CAST)]
    rng = np.random.default_rng([seed, index])
    # ~256 px canvas whatever the output size, so drawing cost and line quality stay flat
    s = image_size * min(4, max(2, round(256 / image_size)))
    canvas = _background(rng, s)
    r = s * rng.uniform(0.27, 0.36)
    cx, cy = (s * (0.5 + rng.uniform(-0.1, 0.1, 2))).tolist()
    pen = Pen(canvas, cx, cy, r, float(rng.uniform(-25, 25)))
    _draw_face(pen, rng, _vary(rng, char), emotion)
    small = np.asarray(canvas.resize((image_size, image_size), Image.LANCZOS), dtype=np.float32)
    gain, bias, noise = rng.uniform(0.8, 1.15), rng.uniform(-20, 20), rng.uniform(0, 12)
    small = small * gain + bias + (rng.random(small.shape) - rng.random(small.shape)) * noise
    buf = io.BytesIO()
    # zlib level 1: half the encode time of the default for ~10 % bigger files (noise barely packs)
    out = Image.fromarray(np.clip(small + 0.5, 0, 255).astype(np.uint8))
    out.save(buf, format="PNG", compress_level=1)
    name = f"{char.name}/{emotion}/{char.name}_{emotion}_{index:05d}.png"
    return ToonImage(name=name, label=emotion, group=char.name, png=buf.getvalue())


def _check_args(seed: int, image_size: int) -> None:
    _check_int("seed", seed, 0, None)
    _check_int("image_size", image_size, 16, 1024)


def _check_int(name: str, value: object, lo: int, hi: int | None) -> None:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        want = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ValueError(f"toon: {name} must be {want}, got {value!r}")


def _vary(rng: np.random.Generator, c: Character) -> Character:
    """Per-image jitter of a character's colours and proportions (same character, new drawing)."""

    def jit(col: RGB) -> RGB:
        out = np.clip(np.array(col) + rng.integers(-12, 13, 3), 0, 255)
        return (int(out[0]), int(out[1]), int(out[2]))

    kw, kh = rng.uniform(0.95, 1.05, 2).tolist()
    return replace(c, width=c.width * kw, height=c.height * kh, skin=jit(c.skin),
                   hair=jit(c.hair), iris=jit(c.iris))  # fmt: skip


def _background(rng: np.random.Generator, s: int) -> Image.Image:
    kind = int(rng.integers(3))
    c0, c1 = rng.integers(0, 256, (2, 3)).astype(np.float32)
    if kind == 0:  # flat
        img = Image.new("RGB", (s, s), tuple(int(v) for v in c0))
    elif kind == 1:  # linear gradient in a random direction
        a = rng.uniform(0, 2 * math.pi)
        xs, ys = grid(s)
        t = np.clip(((xs - s / 2) * math.cos(a) + (ys - s / 2) * math.sin(a)) / s + 0.5, 0, 1)
        img = Image.fromarray((c0 + (c1 - c0) * t[..., None]).astype(np.uint8))
    else:  # blotchy low-frequency noise between two colours
        t = rng.random((5, 5, 1))
        low = (c0 + (c1 - c0) * t).astype(np.uint8)
        img = Image.fromarray(low).resize((s, s), Image.BICUBIC)
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(0, 6))):  # out-of-focus blobs as clutter
        x, y, rad = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(0.03, 0.15) * s
        col = tuple(int(v) for v in rng.integers(0, 256, 3)) + (int(rng.integers(50, 140)),)
        draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=col)
    return img


def _expression(rng: np.random.Generator, emotion: str) -> tuple[dict[str, float], dict[str, bool]]:
    strong = rng.random() >= AMBIGUOUS_FRACTION
    t = rng.uniform(0.35, 1.0) if strong else rng.uniform(0.0, 0.25)
    target, side = _TARGET[emotion], float(rng.choice([-1.0, 1.0]))
    ex = {}
    for key, v0 in _NEUTRAL.items():
        v = v0 + t * (target.get(key, v0) - v0) + rng.normal(0, _JITTER[key])
        lo, hi = _LIMITS.get(key, (-9.0, 9.0))
        ex[key] = min(hi, max(lo, v)) * (side if key.endswith("asym") else 1.0)
    probs = _CUE_P[emotion]
    cues = {k: bool(rng.random() < _CUE_BASE + t * (probs.get(k, _CUE_BASE) - _CUE_BASE))
            for k in _CUES}  # fmt: skip
    if cues["teeth"] or cues["tongue"]:  # both need an open mouth to show
        ex["mouth_open"] = max(ex["mouth_open"], 0.08)
    return ex, cues


def _draw_face(pen: Pen, rng: np.random.Generator, ch: Character, emotion: str) -> None:
    ex, cues = _expression(rng, emotion)
    anime = ch.style == "anime"
    yaw, pitch = rng.uniform(-0.3, 0.3), rng.uniform(-0.05, 0.05)
    fx = yaw * 0.18  # features slide sideways when the head turns; the outline does not
    hair_dark = tuple(int(v * 0.55) for v in ch.hair)
    _hair(pen, ch, anime, back=True)
    ears = [ell(side * ch.width * 0.97, 0.12, 0.13, 0.19, 16) for side in (-1, 1)]
    for part in [*ears, _head(ch)]:
        if anime:
            pen.poly(part, ch.skin, _INK, 0.035)
        else:
            pen.shaded(part, ch.skin)
    eye_y = (0.14 if anime else 0.06) + pitch
    if cues["blush"]:
        for side in (-1, 1):
            bx, by = side * 0.5 + fx, eye_y + 0.25
            pen.poly(ell(bx, by, 0.15, 0.07, 16), (255, 90, 120, 110))
            if anime:
                for k in (-1, 0, 1):
                    pen.line([(bx + k * 0.06 - 0.02, by + 0.03), (bx + k * 0.06 + 0.02, by - 0.03)],
                             (220, 60, 90), 0.018)  # fmt: skip
    if anime:  # nose: a small stroke / a shaded bump
        pen.line([(fx * 1.3, eye_y + 0.2), (fx * 1.3 - 0.03, eye_y + 0.26)], (150, 90, 90), 0.02)
    else:
        pen.shaded(ell(fx * 1.3, eye_y + 0.27, 0.08, 0.06, 16), ch.skin, (fx - 0.1, eye_y + 0.15))
    for side in (-1, 1):
        scale = (1 - 0.25 * yaw * side) * (1 - ex["eye_asym"] * side)
        _eye(pen, ch, anime, ex, cues, side * 0.36 + fx, eye_y, side, scale)
    _mouth(pen, anime, ex, cues, fx * 1.2, 0.58 + pitch)
    _hair(pen, ch, anime, back=False, shift=fx * 0.5)
    for side in (-1, 1):  # brows over the fringe, as cartoons draw them, so they are never hidden
        bw, inner = 0.16, -side
        by0 = eye_y - (0.2 if anime else 0.14) - 0.1 + ex["brow_y"] - ex["brow_asym"] * side
        us = [-1.0, -0.5, 0.0, 0.5, 1.0]
        pts = [(side * 0.36 + fx + u * bw, by0 - ex["brow_arch"] * (1 - u * u)
                + ex["brow_tilt"] * u * inner) for u in us]  # fmt: skip
        pen.line(pts, hair_dark, 0.055 if anime else 0.07)
    if cues["tears"]:
        for side in (-1, 1):
            x0, y0 = side * 0.42 + fx, eye_y + 0.12
            length = 0.15 + 0.3 * rng.random()
            pen.poly([(x0 - 0.035, y0), (x0 + 0.035, y0), (x0 + 0.045, y0 + length),
                      (x0 - 0.045, y0 + length)], (110, 180, 255, 170))  # fmt: skip
            pen.poly(drop(x0, y0 + length + 0.05, 0.05), (110, 180, 255, 210))
    if cues["sweat"]:
        side = float(rng.choice([-1.0, 1.0]))
        rim = (60, 120, 200) if anime else None
        pen.poly(drop(side * 0.68, -0.3, 0.07), (160, 215, 255, 230), rim)
    if cues["vein"]:  # the cross-popping "anger mark"
        vx, vy = float(rng.choice([-1.0, 1.0])) * 0.5, -0.62
        for qx, qy in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
            a0 = math.atan2(qy, qx) + math.pi
            pen.line(ell(vx + qx * 0.1, vy + qy * 0.1, 0.07, 0.07, 6, a0 - 0.9, a0 + 0.9),
                     (225, 30, 40), 0.03)  # fmt: skip
    if cues["gloom"]:  # vertical shadow lines on the forehead
        for k in range(int(rng.integers(3, 6))):
            x = -0.35 + 0.7 * k / 4
            pen.line([(x, -0.78), (x, -0.38)], (70, 50, 150, 130), 0.028)


def _head(ch: Character, n: int = 64) -> Pts:
    e, out = 2.0 / ch.squareness, []
    for i in range(n):
        t = 2 * math.pi * i / n
        c, s = math.cos(t), math.sin(t)
        x, y = ch.width * math.copysign(abs(c) ** e, c), ch.height * math.copysign(abs(s) ** e, s)
        if y > 0:  # taper the lower half towards the chin
            x *= 1 - ch.chin * (y / ch.height) ** 2
        out.append((x, y))
    return out


def _hair(pen: Pen, ch: Character, anime: bool, back: bool, shift: float = 0.0) -> None:
    w, h, style = ch.width, ch.height, ch.hair_style

    def fill(xy: Pts) -> None:
        if anime:
            pen.poly(xy, ch.hair, _INK, 0.03)
        else:
            pen.shaded(xy, ch.hair)

    if back:
        if style in ("bob", "long"):  # a dome behind the head, down to the jaw / the shoulders
            y0, bottom, wide = (-0.2, 0.6, 1.2) if style == "bob" else (-0.1, 1.5, 1.3)
            dome = ell(0, y0, w * 1.22, h * 1.1, 40, math.pi, 2 * math.pi)
            fill(dome + ell(0, bottom - 0.15, w * wide, 0.15, 12, 0, math.pi))
        elif style == "bun":
            fill(ell(0, -h * 1.08, 0.33, 0.3, 24))
        return
    spiky = style == "spiky"
    fringe_y = {"bob": -0.36, "long": -0.4, "spiky": -0.42, "short": -0.55, "bun": -0.5}[style]
    cap = []
    for i in range(41):  # outline of the skull, a bit outside the head, from left side over the top
        t = math.pi - 0.35 + (math.pi + 0.7) * i / 40
        k = 1.3 if spiky and i % 4 == 2 and math.sin(t) < -0.3 else 1.07
        cap.append((w * k * math.cos(t), h * k * math.sin(t)))
    n_teeth = 7 if spiky else 5
    amp = {"spiky": 0.2, "short": 0.05}.get(style, 0.12)
    fringe = []
    for j in range(2 * n_teeth + 1):  # zigzag/scalloped fringe, right to left
        u = 1 - 2 * j / (2 * n_teeth)
        tilt = 0.12 * u if style == "long" else 0.0  # side-swept
        fringe.append((u * w * 0.8 + shift, fringe_y - tilt + (amp if j % 2 else 0.0)))
    fill(cap + fringe)
    if anime:  # shine band
        shine = ell(0, 0, w * 0.78, h * 0.82, 8, math.pi * 1.2, math.pi * 1.45)
        pen.line(shine, (255, 255, 255, 120), 0.05)


def _eye(pen: Pen, ch: Character, anime: bool, ex: dict[str, float], cues: dict[str, bool],
         x: float, y: float, side: int, scale: float) -> None:  # fmt: skip
    ew, eh0 = (0.17, 0.19) if anime else (0.12, 0.13)
    ew, eh0 = ew * scale, eh0 * scale
    if cues["closed"]:  # happy "^" eyes
        pts = [(x + ew * u, y - eh0 * 0.6 * (1 - u * u)) for u in (-1, -0.6, -0.2, 0.2, 0.6, 1)]
        pen.line(pts, _INK if anime else (70, 40, 40), 0.045)
        return
    eh = eh0 * ex["eye_open"]
    ring = ell(x, y, ew, eh)
    pen.poly(ring, _WHITE if anime else (245, 242, 238))
    ia, ib = ew * (0.72 if anime else 0.6), min(eh0 * 0.8, eh * 0.95)
    ix, iy = x, y + ex["gaze"] * (eh - ib)  # gaze > 0 looks down (sadness)
    pen.poly(ell(ix, iy, ia, ib, 20), ch.iris)
    pr = ex["pupil"]
    pen.poly(ell(ix, iy, ia * 0.45 * pr, ib * 0.5 * pr, 16), (20, 14, 30))
    pen.poly(ell(ix - ia * 0.35, iy - ib * 0.4, ia * 0.28, ia * 0.28, 10), _WHITE)
    if anime:
        pen.poly(ell(ix + ia * 0.3, iy + ib * 0.35, ia * 0.13, ia * 0.13, 8), _WHITE)
        pen.line(ring + ring[:1], _INK, 0.02)  # outline last, over the iris
    lid, top, inner = ex["lid"], y - eh, -side
    drop_in, drop_out = max(lid, 0) * eh * 1.3, max(-lid, 0) * eh * 1.3
    lid_col = ch.skin if anime else tuple(int(v * 0.85) for v in ch.skin)
    lash = _INK if anime else tuple(int(v * 0.5) for v in ch.skin)
    if drop_in + drop_out > 0.01:  # slanted upper lid: inner-low = anger, outer-low = sadness
        xi, xo = x + inner * ew * 1.15, x - inner * ew * 1.15
        cover = [(xi, top - 0.06), (xo, top - 0.06), (xo, top + drop_out), (xi, top + drop_in)]
        pen.poly(cover, lid_col)
        edge = [(x + inner * ew, top + drop_in), (x - inner * ew, top + drop_out)]
    else:
        edge = ell(x, y, ew, eh, 10, math.pi * 1.05, math.pi * 1.95)
    pen.line(edge, lash, 0.045 if anime else 0.03)


def _mouth(pen: Pen, anime: bool, ex: dict[str, float], cues: dict[str, bool],
           mx: float, my: float) -> None:  # fmt: skip
    w, op, rnd = ex["mouth_w"], ex["mouth_open"], ex["mouth_round"]
    us = [-1 + 2 * i / 16 for i in range(17)]

    def base(u: float) -> float:
        wave = ex["mouth_wave"] * 0.03 * math.sin(3 * math.pi * u)
        return my - ex["mouth_curve"] * 0.12 * u * u + ex["mouth_asym"] * 0.07 * u + wave

    ink = (70, 30, 40) if anime else (110, 45, 45)
    if op < 0.03:
        pen.line([(mx + w * u, base(u)) for u in us], ink, 0.035 if anime else 0.04)
        return
    bulge = [math.sqrt(max(0.0, 1 - u * u)) for u in us]
    upper = [base(u) - rnd * op * 0.6 * b for u, b in zip(us, bulge, strict=True)]
    lower = [base(u) + op * b for u, b in zip(us, bulge, strict=True)]
    xs = [mx + w * u for u in us]

    def band(top: list[float], bottom: list[float]) -> Pts:
        return list(zip(xs, top, strict=True)) + list(zip(xs[::-1], bottom[::-1], strict=True))

    pen.poly(band(upper, lower), (95, 25, 40), ink if anime else None, 0.03)
    pairs = list(zip(upper, lower, strict=True))
    if cues["teeth"]:  # a white band under the upper lip, never past the lower one
        pen.poly(band(upper, [min(lo, up + 0.05) for up, lo in pairs]), _WHITE)
    if cues["tongue"]:  # fills the lower half of the opening
        pen.poly(band([(up + lo) / 2 for up, lo in pairs], lower), (235, 110, 125))
