"""Trial checkpoints: what a trial saves each epoch and how a retried trial finds the newest
readable one (Ray restores the latest; a corrupt one must not end the trial).

A checkpoint directory holds three files:
  last.pt   model and optimiser state and torch's RNG: everything known when training ends
  meta.pt   epoch, history and best (known only after validation)
  best.pt   the best-validation weights (read by `study.evaluate`)
The epoch's state is copied to the host as soon as its training ends (`snapshot`: on CUDA
non-blocking copies, so the host does not wait) and serialised by one background thread
(`CheckpointWriter`) while the trial validates; the trial waits for the writer before it reports,
so the directory Ray copies is always complete.

Every checkpoint file of a study is read by `read_weights`: only with `weights_only=True`, and a
file that is missing, damaged or holds more than weights is a StudyFileError naming it.
"""

from __future__ import annotations

import io
import pickle
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pyarrow import fs as pafs

from study import storage
from study.results.errors import StudyFileError, one_line, why

LAST, META, BEST = "last.pt", "meta.pt", "best.pt"
# what torch's weights-only unpickler names when it refuses a file (`GLOBAL numpy._core...`)
_REFUSED = re.compile(r"Unsupported global: GLOBAL (\S+)")


def read_weights(path: str | Path, map_location: Any = "cpu") -> Any:
    """A study's torch file (a checkpoint's .pt, final_model/model.pt; a local path or a URI),
    loaded only with `weights_only=True`: tensors and plain values, never objects whose
    unpickling could run code from the file.

    A missing, damaged or refused file is a StudyFileError naming it and what to do. Torch's own
    message for a refused file advises loading it with weights_only=False; it is never shown
    (nor chained: a notebook's traceback would print it)."""
    path = str(path)
    if not storage.is_file(path):
        raise StudyFileError(path, "missing")
    # a local file is read by torch as it goes; a remote one is fetched whole first
    remote = storage.is_remote(path)
    source = io.BytesIO(storage.read_bytes(path)) if remote else storage.local_path(path)
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4 ...": the error says it
            warnings.simplefilter("ignore")
            return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = _REFUSED.search(str(e))
        problem = (
            f"holds more than weights ({found.group(1)}), which is not loaded: only tensors "
            "and plain values are (unpickling more could run code from the file)"
            if found
            else "damaged, or not a torch file (its bytes are no checkpoint)"
        )
        raise StudyFileError(path, problem) from None
    except Exception as e:  # truncated (the zip reader's RuntimeError), empty (EOFError), ...
        raise StudyFileError(path, f"not a readable checkpoint ({why(e)})") from None


def state_dict(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """`obj`, read from `path`, if it is a state dict (names to tensors), else a StudyFileError."""
    if not (
        isinstance(obj, dict)
        and obj
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise StudyFileError(str(path), "holds no model weights (a state dict of tensors)")
    return obj


def load_weights(model: torch.nn.Module, path: str | Path, map_location: Any) -> None:
    """Load the state dict at `path` into `model`; weights that do not fit it (another model or
    options than its config says) are a StudyFileError naming the file."""
    state = state_dict(read_weights(path, map_location), path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # torch lists the missing and unexpected keys over many lines
        raise StudyFileError(
            str(path), f"its weights do not fit the model its config builds ({one_line(str(e))})"
        ) from e


def to_host(tree: Any) -> Any:
    """A copy of `tree` (nested dicts, lists, tuples) with every tensor copied to the host.

    From CUDA the copies are non-blocking into pinned memory: they are queued on the stream
    ahead of the next step's in-place updates, and complete once an event recorded after them
    has; the host never waits here."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", non_blocking=True, copy=True)
    if isinstance(tree, dict):
        return {k: to_host(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(to_host(v) for v in tree)
    return tree


@dataclass
class Snapshot:
    """The host copy of a trial's training state at the end of an epoch."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    torch_rng: torch.Tensor
    ready: Any = None  # a torch.cuda.Event once the device copies have landed (None on CPU)

    def wait(self) -> None:
        if self.ready is not None:
            self.ready.synchronize()

    def last(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer, "torch_rng": self.torch_rng}


def snapshot(model: torch.nn.Module, opt: torch.optim.Optimizer) -> Snapshot:
    # the optimiser's state_dict holds references to its live state tensors: copied as well
    weights = model.state_dict()
    snap = Snapshot(to_host(weights), to_host(opt.state_dict()), torch.get_rng_state())
    if any(t.is_cuda for t in weights.values()):
        snap.ready = torch.cuda.Event()
        snap.ready.record()
    return snap


def write_last(path: Path, snap: Snapshot) -> None:
    snap.wait()
    torch.save(snap.last(), path / LAST)


def write_meta(path: Path, epoch: int, history: list[dict], best: dict) -> None:
    torch.save({"epoch": epoch, "history": history, "best": best}, path / META)


def write_best(path: Path, snap: Snapshot, best_state: dict[str, torch.Tensor]) -> None:
    snap.wait()  # best_state may be this epoch's snapshot of the weights
    torch.save(best_state, path / BEST)


class CheckpointWriter:
    """One background thread that serialises checkpoint files in the order they are queued.

    `wait()` blocks until everything queued is on disk and re-raises, in the trial's thread,
    the first error the writer met (a full disk must fail the trial, not leave a checkpoint
    without files)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-writer")
        self._pending: list[Future] = []

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._pending.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    @contextmanager
    def directory(self) -> Iterator[Path]:
        """A temporary checkpoint directory; on leaving it (also on an error) the writer is
        waited for before the directory is removed, so no write lands in a deleted folder."""
        with tempfile.TemporaryDirectory() as d:
            try:
                yield Path(d)
            finally:
                pending, self._pending = self._pending, []
                for f in pending:  # errors were raised by wait() already, or an error is
                    f.exception()  # on its way out of the block: only let the writes finish

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def save_state(
    path: Path,
    model,
    opt,
    epoch: int,
    history: list[dict],
    best: dict,
    best_state: dict | None = None,
) -> None:
    """The whole checkpoint, written synchronously (what the writer thread does in pieces)."""
    snap = snapshot(model, opt)
    write_last(path, snap)
    write_meta(path, epoch, history, best)
    write_best(path, snap, best_state if best_state is not None else snap.model)


@dataclass(frozen=True)
class LocalCheckpoint:
    """A checkpoint directory on this machine, to resume from without Ray (Ray's
    `tune.Checkpoint` has the same two members)."""

    path: str

    @contextmanager
    def as_directory(self) -> Iterator[str]:
        yield self.path


def candidates(ckpt: Any) -> list:
    """The checkpoint Ray restores, then its older siblings (num_to_keep=2), newest first; [] for
    None (a fresh start). Siblings are made with `type(ckpt)`: this module needs no Ray."""
    if ckpt is None:
        return []

    parent = str(Path(ckpt.path).parent)
    infos = ckpt.filesystem.get_file_info(pafs.FileSelector(parent))
    older = sorted(
        (
            i.path
            for i in infos
            if i.type == pafs.FileType.Directory
            and Path(i.path).name.startswith("checkpoint_")
            and i.path < ckpt.path
        ),
        reverse=True,
    )
    return [ckpt, *(type(ckpt)(p, ckpt.filesystem) for p in older)]


def unreadable(e: Exception) -> str:
    """Why a checkpoint did not load, for a trial's status_reason: the file and its problem, not
    the remedy (the trial's own is to fall back to an older checkpoint)."""
    return f"{Path(e.path).name}: {e.problem}" if isinstance(e, StudyFileError) else why(e)


def restore(found: Sequence[Any], model, opt, device) -> tuple[int, list, dict, dict | None, str]:
    """Load the first readable checkpoint of `found` (newest first, see `candidates`); a corrupt
    one is named and skipped, never fatal."""
    notes = []
    for cand in found:
        try:
            with cand.as_directory() as d:
                state = read_weights(Path(d) / LAST, device)
                # checkpoints written before meta.pt existed kept these keys in last.pt
                meta = read_weights(Path(d) / META) if (Path(d) / META).exists() else state
                best_state = read_weights(Path(d) / BEST)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except Exception as e:  # unreadable, truncated, or from another model: try an older one
            notes.append(f"checkpoint {cand.path} is unreadable ({unreadable(e)})")
            continue
        torch.set_rng_state(state["torch_rng"])
        notes.append(f"resumed from checkpoint {cand.path} (epoch {meta['epoch']})")
        return meta["epoch"], meta["history"], meta["best"], best_state, "; ".join(notes)
    notes.append("restarted from scratch")
    return 0, [], {"value": None, "epoch": 0}, None, "; ".join(notes)
