from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MANGA_DIR = SHARED / "data" / "manga"
MANGA_CLASSES = ("angry", "crying", "embarrassed", "happy", "pleased", "sad", "shock")

# Tests must be deterministic and light on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def face_png(path: Path, seed: int, size: int = 48, mode: str = "RGB") -> None:
    """A small random image (not a face; layout fixtures only need decodable files)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


@pytest.fixture
def manga_tree(tmp_path: Path) -> Path:
    root = tmp_path / "src" / "Manga Facial Expressions"
    for c, cls in enumerate(MANGA_CLASSES):
        for i in range(4):
            name = f"{i} - Copy ({c}).png" if i == 0 else f"{cls}_{i}.jpg" if i == 1 else f"{cls}_{i}.png"
            face_png(root / cls / name, seed=c * 10 + i, mode="L" if i == 2 else "RGB")
    return tmp_path / "src"


@pytest.fixture
def ferg_tree(tmp_path: Path) -> Path:
    chars = ("aia", "bonnie", "jules", "malcolm", "mery", "ray")
    emos = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
    root = tmp_path / "FERG_DB_256"
    for ci, ch in enumerate(chars):
        for ei, em in enumerate(emos):
            for n in range(2):
                face_png(root / ch / f"{ch}_{em}" / f"{ch}_{em}_{n}.png", seed=ci * 100 + ei * 10 + n)
    return root


requires_manga = pytest.mark.skipif(not MANGA_DIR.is_dir(), reason=f"{MANGA_DIR} not present")
