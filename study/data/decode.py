"""Decoding, validation and the one RGB conversion every image goes through.

Kept in one place so that `prepare` (which validates) and the tensor cache (which resizes) convert
grayscale, palette, alpha and 16-bit images exactly the same way.
"""

from __future__ import annotations

import hashlib
import io
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
    """Convert any supported mode to 8-bit RGB, compositing alpha on white.

    One rule per mode, never one that depends on the image's own values:
    - "I;16", "I;16L", "I;16B" (16-bit PNG/TIFF): 0..65535 maps linearly onto 0..255.
    - "I" (32-bit integers): the same 0..65535 range, values outside it clipped. PIL gives "I" for
      16-bit PGM/PPM (any maxval over 255, already rescaled by PIL to 0..65535) and for 32-bit
      TIFF; the latter is clipped at 65535, as a viewer without a window setting would.
    - "1", "L", "P", "RGB" and the alpha modes: PIL's conversion, alpha composited on white.
    """
    if img.mode not in SUPPORTED_MODES:
        raise BadImage(
            f"unsupported image mode {img.mode} (expected one of {', '.join(SUPPORTED_MODES)})"
        )
    if img.mode in ("I;16", "I;16L", "I;16B", "I"):
        # PIL's convert("L") would clip at 255 instead of scaling
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")  # palette transparency becomes a real alpha channel
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def max_pixels() -> int:
    """The most pixels one image may declare: PIL's own limit, read when used, so that raising
    `PIL.Image.MAX_IMAGE_PIXELS` (as PIL documents) is respected here too."""
    return int(Image.MAX_IMAGE_PIXELS or 0) or 2**62


def _open(data: bytes) -> Image.Image:
    """Decode fully, so that a truncated file fails here and never later inside a trial.

    The declared size is checked from the header before any pixel is decoded, so a small file
    that would inflate to gigabytes (a decompression bomb) is refused by name. The check is an
    explicit comparison, not a warnings filter: `warnings.catch_warnings` changes process-wide
    state and is not thread-safe, and decoding runs in a thread pool, so the same input gave
    different results from run to run.
    """
    if not data:
        raise BadImage("empty file (0 bytes)")
    limit = max_pixels()
    try:
        img = Image.open(io.BytesIO(data))  # lazy: reads the header only
        w, h = img.size
        if w * h > limit:
            raise BadImage(
                f"declares {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                "(PIL.Image.MAX_IMAGE_PIXELS; a decompression bomb?)"
            )
        img.load()
    except BadImage:
        raise
    except Image.UnidentifiedImageError:
        raise BadImage("not an image (no decoder recognises it)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # PIL refuses sizes over twice its limit while opening, before the check above
        raise BadImage(
            f"declares too many pixels, over the limit of {limit:,} "
            f"(PIL.Image.MAX_IMAGE_PIXELS; a decompression bomb?): {e}"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
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


# timm's pretrained_cfg names (`interpolation`) -> PIL's filters; a model without one is fed
# bicubic, the cache's only filter before it was keyed by interpolation
INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def check_interpolation(interpolation: str) -> str:
    """`interpolation` if PIL can resize with it, else a ValueError naming the choices."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation {interpolation!r}: expected one of {', '.join(INTERPOLATIONS)}"
        )
    return interpolation


def resize_square(img: Image.Image, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """Centre-crop to a square and resize with `interpolation` (the filter the model's weights
    were trained with, see study.models.input_interpolation): faces are centred and a crop keeps
    the aspect ratio."""
    resample = INTERPOLATIONS[check_interpolation(interpolation)]
    fitted = ImageOps.fit(img, (size, size), resample)
    return np.asarray(fitted, dtype=np.uint8).transpose(2, 0, 1)  # CHW
