"""Reading a prepared data set, and the decode-once uint8 tensor cache that trials train from.

A data set lives in a local directory or on shared storage (`s3://bucket/data/<name>`); its
Parquet is read through pyarrow either way. The decoded cache is always on local disk: next to
a local data set, or in this node's cache directory (`$STUDY_CACHE_DIR`, else `~/.cache/study`)
for a remote one.
"""

from __future__ import annotations

import json
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from study import storage
from study.data.decode import check_interpolation, decode_rgb, resize_square
from study.data.prepare import CACHE_DIR, IMAGES_FILE, MANIFEST_FILE
from study.data.splits import SPLITS

META_COLUMNS = ["path", "label", "label_id", "group", "split", "sha256", "width", "height"]


class NotPreparedError(FileNotFoundError):
    pass


class DataChangedError(ValueError):
    """The data set on storage is no longer the version a study opened (prepared again since)."""


@dataclass(frozen=True)
class PreparedDataset:
    root: Path | str  # a local directory, or the data set's URI on shared storage
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

    @property
    def cache_dir(self) -> Path:
        """Local directory of the decoded tensors (one .npy per version, size, interpolation and
        split)."""
        if storage.is_remote(self.root):
            return storage.cache_root() / "data" / self.name
        return Path(self.root) / CACHE_DIR

    def read_images(self, columns: list[str], split: str | None = None) -> pa.Table:
        filters = [("split", "=", split)] if split else None
        fs, path = storage.resolve(storage.join(self.root, IMAGES_FILE))
        return pq.read_table(path, filesystem=fs, columns=columns, filters=filters)

    def check_unchanged(self) -> None:
        """A study pins the version it started with: its splits are the ones its trials trained
        and were selected on. `prepare --overwrite` (another seed or split rule) may have replaced
        the data set since; reading that one would score "held-out" images the trials saw."""
        now = json.loads(storage.read_text(storage.join(self.root, MANIFEST_FILE)))["version"]
        if now != self.version:
            raise DataChangedError(
                f"data set {self.name} in {storage.redact(str(self.root))} is version {now} "
                f"now, not version {self.version} that this study started with (prepared again "
                "since?): its splits are not the study's; prepare it again as it was, or start a "
                "new study"
            )

    def table(self, split: str | None = None) -> pd.DataFrame:
        """Metadata rows (no image bytes), in a stable order."""
        return self.read_images(META_COLUMNS, split).to_pandas()


def open_dataset(data_dir: str | Path, name: str) -> PreparedDataset:
    """The prepared data set `name` under `data_dir` (a local path or a URI)."""
    remote = storage.is_remote(data_dir)
    root = storage.join(data_dir, name) if remote else storage.local_path(data_dir) / name
    manifest = storage.join(root, MANIFEST_FILE)
    if not storage.is_file(manifest):
        raise NotPreparedError(
            f"data set {name!r} is not prepared in {data_dir} (no {manifest}); run:\n"
            f"  python -m study.data prepare {name} "
            + ("" if name == "toon" else "--source PATH ")
            + f"--data-dir {data_dir}"
        )
    return PreparedDataset(root, json.loads(storage.read_text(manifest)))


@dataclass(frozen=True)
class SplitArrays:
    images: np.ndarray  # uint8, N x 3 x S x S (memory-mapped from the cache)
    labels: np.ndarray  # int64, N
    paths: list[str]


# Counts decodes in this process; the decode-once test and benchmark read it.
DECODE_COUNT = {"images": 0}


def cache_file(ds: PreparedDataset, split: str, size: int, interpolation: str) -> Path:
    """The .npy of one (version, size, interpolation, split). Bicubic keeps the name it had
    before the key held an interpolation, so caches decoded then stay valid."""
    tag = "" if interpolation == "bicubic" else f"-{interpolation}"
    return ds.cache_dir / f"{ds.version}-{size}px{tag}-{split}.npy"


def _decode_split(ds: PreparedDataset, split: str, size: int, interpolation: str) -> np.ndarray:
    blobs = ds.read_images(["image"], split).column("image").to_pylist()
    out = np.empty((len(blobs), 3, size, size), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = resize_square(decode_rgb(blobs[i]), size, interpolation)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        list(pool.map(one, range(len(blobs))))
    DECODE_COUNT["images"] += len(blobs)
    return out


def load_split(
    ds: PreparedDataset, split: str, image_size: int, interpolation: str = "bicubic"
) -> SplitArrays:
    """uint8 images of one split at one size, resized with `interpolation` (the filter the
    model's weights expect: study.models.input_interpolation), decoded at most once per
    (version, size, interpolation, split).

    The cache is a plain .npy on this node's disk (`ds.cache_dir`); it is memory-mapped, so every
    process on a node shares the page cache instead of holding its own copy.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    check_interpolation(interpolation)  # before any image is decoded
    ds.check_unchanged()  # every read after tuning (test split, confirmation, refit) comes here
    meta = ds.table(split)
    cache = cache_file(ds, split, image_size, interpolation)
    if not cache.exists():
        arr = _decode_split(ds, split, image_size, interpolation)
        cache.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename: concurrent trials never see a half-written cache. open("xb") makes
        # the file as the umask says (mkstemp's 0600 hid a shared data set's cache from a team).
        tmp = cache.with_name(f".{cache.name}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "xb") as f:
            np.save(f, arr)
        os.replace(tmp, cache)
    # A plain ndarray view of the memory map, not the np.memmap itself: pickle protocol 5 passes
    # an ndarray's bytes out of band, so Ray's object store hands every trial on a node a
    # zero-copy view of one copy; an np.memmap pickles in band and each trial unpickles its own.
    images = np.asarray(np.load(cache, mmap_mode="r"))
    if len(images) != len(meta):
        raise ValueError(
            f"cache {cache} has {len(images)} images, data set has {len(meta)}; delete it"
        )
    return SplitArrays(images, meta["label_id"].to_numpy(np.int64), meta["path"].tolist())


def empty_split(like: SplitArrays) -> SplitArrays:
    return SplitArrays(like.images[:0], like.labels[:0], [])


def concat(*parts: SplitArrays) -> SplitArrays:
    """Several splits as one (train+val for folds and the refit)."""
    return SplitArrays(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        [path for p in parts for path in p.paths],
    )


def subset(arr: SplitArrays, idx: np.ndarray) -> SplitArrays:
    return SplitArrays(arr.images[idx], arr.labels[idx], [arr.paths[i] for i in idx])
