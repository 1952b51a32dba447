"""Decoding, validation and the one RGB conversion every image goes through.

Kept in one place so that `prepare` (which validates) and the tensor cache (which resizes) convert
grayscale, palette, alpha and 16-bit images exactly the same way.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

# Modes we know how to turn into RGB deterministically. Others (CMYK, YCbCr, float "F", ...) would
# need colour management or a value range we cannot guess, so they are rejected by name.
SUPPORTED_MODES = (
    "1",
    "L",
    "LA",
    "La",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "I;16",
    "I;16L",
    "I;16B",
    "I",
)
MIN_SIDE = 32  # smaller crops carry too little of a face to label
BACKGROUND = (255, 255, 255)  # transparent pixels become white, like the paper of a manga page


class BadImage(ValueError):
    """One file that cannot be used; the message is the reason shown next to its path."""


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    width: int
    height: int
    format: str
    mode: str
    dhash: int  # 64-bit difference hash for near-duplicate reports


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any supported mode to 8-bit RGB, compositing alpha on white."""
    if img.mode not in SUPPORTED_MODES:
        raise BadImage(
            f"unsupported image mode {img.mode} (expected one of {', '.join(SUPPORTED_MODES)})"
        )
    if img.mode in ("I;16", "I;16L", "I;16B", "I"):
        # 16-bit grayscale: scale the full 0..65535 range down (PIL's convert("L") would clip).
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")  # palette transparency becomes a real alpha channel
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _open(data: bytes) -> Image.Image:
    """Decode fully, so that a truncated file fails here and never later inside a trial."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()
    except Image.UnidentifiedImageError:
        raise BadImage("not an image (no decoder recognises it)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"cannot be decoded ({e})") from None
    return img


def decode_rgb(data: bytes) -> Image.Image:
    img = _open(data)
    return to_rgb(ImageOps.exif_transpose(img))  # store what a viewer shows


def dhash(img: Image.Image) -> int:
    """Difference hash: robust to re-encoding and resizing, so it finds near-duplicates."""
    small = np.asarray(img.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def inspect_image(data: bytes, min_side: int = MIN_SIDE) -> ImageFacts:
    """Validate one file; raise BadImage with the reason, else return its facts."""
    img = _open(data)
    fmt, mode = img.format or "?", img.mode
    rgb = to_rgb(ImageOps.exif_transpose(img))
    w, h = rgb.size
    if min(w, h) < min_side:
        raise BadImage(f"too small ({w}x{h}; at least {min_side} px per side expected)")
    return ImageFacts(hashlib.sha256(data).hexdigest(), w, h, fmt, mode, dhash(rgb))


def resize_square(img: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize: faces are centred and a crop keeps the aspect ratio."""
    fitted = ImageOps.fit(img, (size, size), Image.BICUBIC)
    return np.asarray(fitted, dtype=np.uint8).transpose(2, 0, 1)  # CHW
