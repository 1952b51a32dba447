"""Reading a prepared data set, and the decode-once uint8 tensor cache that trials train from."""

from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from study.data.decode import decode_rgb, resize_square
from study.data.prepare import IMAGES_FILE, MANIFEST_FILE
from study.data.splits import SPLITS

META_COLUMNS = ["path", "label", "label_id", "group", "split", "sha256", "width", "height"]


class NotPreparedError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class PreparedDataset:
    root: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    def table(self, split: str | None = None) -> pd.DataFrame:
        """Metadata rows (no image bytes), in a stable order."""
        filters = [("split", "=", split)] if split else None
        return pq.read_table(
            self.root / IMAGES_FILE, columns=META_COLUMNS, filters=filters
        ).to_pandas()


def open_dataset(data_dir: str | Path, name: str) -> PreparedDataset:
    root = Path(data_dir) / name
    manifest = root / MANIFEST_FILE
    if not manifest.exists():
        raise NotPreparedError(
            f"data set {name!r} is not prepared in {Path(data_dir)} (no {manifest}); run:\n"
            f"  python -m study.data prepare {name} "
            + ("" if name == "toon" else "--source PATH ")
            + f"--data-dir {data_dir}"
        )
    return PreparedDataset(root, json.loads(manifest.read_text()))


@dataclass(frozen=True)
class SplitArrays:
    images: np.ndarray  # uint8, N x 3 x S x S (memory-mapped from the cache)
    labels: np.ndarray  # int64, N
    paths: list[str]


# Counts decodes in this process; the decode-once test and benchmark read it.
DECODE_COUNT = {"images": 0}


def _decode_split(ds: PreparedDataset, split: str, size: int) -> np.ndarray:
    table = pq.read_table(ds.root / IMAGES_FILE, columns=["image"], filters=[("split", "=", split)])
    blobs = table.column("image").to_pylist()
    out = np.empty((len(blobs), 3, size, size), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = resize_square(decode_rgb(blobs[i]), size)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        list(pool.map(one, range(len(blobs))))
    DECODE_COUNT["images"] += len(blobs)
    return out


def load_split(ds: PreparedDataset, split: str, image_size: int) -> SplitArrays:
    """uint8 images of one split at one size, decoded at most once per (version, size, split).

    The cache is a plain .npy next to the data set; it is memory-mapped, so every trial on a node
    shares the page cache instead of holding its own copy.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    meta = ds.table(split)
    cache = ds.root / "cache" / f"{ds.version}-{image_size}px-{split}.npy"
    if not cache.exists():
        arr = _decode_split(ds, split, image_size)
        cache.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename: concurrent trials never see a half-written cache
        fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, cache)
    images = np.load(cache, mmap_mode="r")
    if len(images) != len(meta):
        raise ValueError(
            f"cache {cache} has {len(images)} images, data set has {len(meta)}; delete it"
        )
    return SplitArrays(images, meta["label_id"].to_numpy(np.int64), meta["path"].tolist())
