"""One error for a file of a study folder that cannot be read or written: `StudyFileError`.

A library's own error on a damaged file (pyarrow's "Parquet magic bytes not found", torch's
UnpicklingError, SQLite's "file is not a database") names no file and says nothing of what the user
can do; torch's even advises loading with `weights_only=False`, which runs whatever code the file
holds. Every reader of a study's files turns such errors into this one, whose text is one line:
the file, what is wrong with it, and what to do. It is a ValueError, so each command prints it as
it prints other bad input (one line, exit code 2).

This module imports nothing of the study but its schema (which imports nothing of the study), so
`study.storage` can raise it for a full or read-only disk.
"""

from __future__ import annotations

import errno
import re
from pathlib import PurePosixPath

from study.results.schema import EPOCH_PARTS, STUDY_JSON

RESTORE = "restore it from a copy"
# why a phrase of torch's is never shown: it tells the user to unpickle an untrusted file
UNSAFE = re.compile(r"weights.only|can still be loaded|arbitrary code", re.IGNORECASE)
LONGEST = 240  # characters of a library's message kept in ours (some run over a page)

# write errors a user can act on (anything else is a bug or a network error: left as it is)
WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full: free space there and run again",
    errno.EDQUOT: "the disk quota is used up: free space there and run again",
    errno.EROFS: "the file system is read-only: write to a writable place",
    errno.EACCES: "permission denied: make the folder writable, or write elsewhere",
    errno.EPERM: "permission denied: make the folder writable, or write elsewhere",
}


class StudyFileError(ValueError):
    """A study file that cannot be read or written; str() is one line: `PATH: PROBLEM; REMEDY`.

    Paths are kept as given (a URI with its credentials): the commands redact what they print,
    as they do for every other error."""

    def __init__(self, path: str | PurePosixPath, problem: str, remedy: str | None = None) -> None:
        self.path = str(path)
        self.problem = one_line(problem)
        self.remedy = remedy or remedy_for(self.path)
        super().__init__(f"{self.path}: {self.problem}; {self.remedy}")


def one_line(text: str) -> str:
    """`text` with its whitespace folded, cut to LONGEST characters."""
    folded = " ".join(str(text).split())
    return folded if len(folded) <= LONGEST else folded[: LONGEST - 1] + "…"


def why(exc: BaseException) -> str:
    """An exception as a short phrase: its type and its message's first line, never advice to
    load a file unsafely (torch's "weights only load failed ... set weights_only=False")."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if UNSAFE.search(text):
        text = ""
    return one_line(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def remedy_for(path: str) -> str:
    """What a user can do about a damaged or missing file, by which file of the study it is."""
    p = PurePosixPath(path.split("?", 1)[0])  # a URI's query is not part of the name
    name, parent = p.name, p.parent.name
    if name == STUDY_JSON:
        return f"{RESTORE} (the study's settings and classes are recorded nowhere else)"
    if parent == "final_model":
        return (
            f"restore {p.parent} from a copy, or delete it to use the best trials instead "
            "(a run with --refit writes it again)"
        )
    if name == "params.json":
        return f"{RESTORE}, or delete the trial's folder {p.parent} to leave the trial out"
    if parent == EPOCH_PARTS:
        return f"{RESTORE}, or delete it (its trial's epochs not yet in epochs.parquet are lost)"
    if name.endswith(".pt") and parent.startswith("checkpoint_"):
        return (
            f"delete the trial's checkpoint {p.parent} (its older checkpoint is used, or the "
            f"trial is passed over), or {RESTORE}"
        )
    if name == "optuna.db":
        return (
            f"{RESTORE}: the study cannot be resumed without it (or run the study again under "
            "a new --name)"
        )
    if name.endswith(".parquet"):
        return f"{RESTORE}, or re-run the study (python -m study.run under a new --name)"
    return RESTORE


def not_written(path: str, exc: OSError) -> StudyFileError | None:
    """The one-line error for a write that failed for a reason the user can fix (disk full,
    read-only, no permission), or None for any other OSError."""
    remedy = WRITE_ERRNOS.get(exc.errno) if exc.errno is not None else None
    if remedy is None:
        return None
    return StudyFileError(path, f"cannot be written ({exc.strerror or why(exc)})", remedy)
