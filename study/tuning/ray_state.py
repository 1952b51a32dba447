"""Ray Tune's saved state of a study, kept as whole saves: what `--resume` restores from.

At each save Tune writes its experiment state (the trials it knows), the search algorithm's state
(how many trials it made, which are live) and the searcher's to a staging folder, then uploads
the folder file by file. `study.storage` publishes each file whole, but a driver killed in the
middle of an upload leaves files from two saves: a ConcurrencyLimiter restored from the newer
one waits forever for a trial that the older experiment state does not know (a resume that
hung), and a counter ahead of Tune's trials would run only part of the study. So at every save
the same files also go into one zip, `ray_state.zip`, published whole: --resume puts its files
back in place, and moves aside any newer ones, before Tune reads them.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import tempfile
import zipfile
from pathlib import Path

import pyarrow.fs as pafs
from ray.tune.search import Searcher, SearchGenerator

from study import storage as st
from study.results.lock import warn
from study.results.schema import RAY_STATE, TRIALS
from study.results.tables import read_table

BUNDLE = RAY_STATE
# what Tune writes at each save: NAME-<session>.json|pkl, the session being when the run began
SAVED = ("experiment_state-", "search_gen_state-", "searcher-state-", "basic-variant-state-")
EXPERIMENT = SAVED[0]
SUPERSEDED = ".superseded"  # a newer file than the last whole save, kept under this suffix


class StateError(ValueError):
    """Ray's saved state of a study cannot be restored; the message names the file."""


def session_of(name: str) -> str | None:
    """The session of a file Tune saves at each save (None for any other file)."""
    for prefix in SAVED:
        stem, dot, ext = name.rpartition(".")
        if name.startswith(prefix) and dot and ext in ("json", "pkl"):
            return stem[len(prefix) :]
    return None


def bundle_save(staging: Path, session: str, study_dir: str) -> None:
    """Zip the files of the save just written to `staging` straight into the study folder, where
    the zip appears whole: not through Tune's upload, which may be running right now (Tune starts
    a save while the last upload goes on) and would publish it after the files it holds."""
    files = sorted(p for p in staging.iterdir() if p.is_file() and session_of(p.name) == session)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for p in files:
            z.writestr(p.name, p.read_bytes())
    st.write_bytes(st.join(study_dir, BUNDLE), buffer.getvalue())


class WholeSaves:
    """For Tune's top search algorithm: Tune saves it right after the experiment state, so once
    its own files are written the staging folder holds one whole save, zipped here."""

    study_dir: str

    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        # Tune starts a save while its last upload of the staging folder may still run: the
        # temporaries the search algorithm writes and renames in the folder it is given would be
        # listed by that upload and gone when it reads them (Ray logs a FileNotFoundError
        # traceback; seen on a Ctrl-C). So they are written beside it, and renamed in whole.
        staging = Path(dirpath)
        with tempfile.TemporaryDirectory(dir=staging.parent, prefix=".search-save-") as private:
            super().save_to_dir(private, session_str)  # type: ignore[misc]
            for path in Path(private).iterdir():
                os.replace(path, staging / path.name)
        bundle_save(staging, session_str, self.study_dir)


class WholeSavesSearchGenerator(WholeSaves, SearchGenerator):
    """Tune's own wrapper of a Searcher (it wraps one it is given the same way)."""

    def __init__(self, searcher: Searcher, study_dir: str):
        super().__init__(searcher)
        self.study_dir = study_dir


def _check_parses(name: str, data: bytes) -> None:
    if not data:
        raise ValueError("empty file")
    if name.startswith(EXPERIMENT):
        json.loads(data)
    else:  # a pickle, whatever its name says: walk its opcodes, unpickling nothing
        for _ in pickletools.genops(data):
            pass


def _unreadable(path: str, e: Exception, what: str) -> StateError:
    return StateError(
        f"--resume: {st.redact(path)} cannot be read ({type(e).__name__}: "
        f"{' '.join(str(e).split())[:160]}): {what}. Restore the file from a copy, or start a "
        "new study (--name NEW); the tables stay as they are"
    )


def read_last_save(study_dir: str) -> dict[str, bytes] | None:
    """The files of Tune's last whole save (None: a study saved before BUNDLE existed, or one
    killed before its first save reached the folder). Every file is checked to parse."""
    path = st.join(study_dir, BUNDLE)
    if not st.exists(path):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(st.read_bytes(path))) as z:
            files = {n: z.read(n) for n in z.namelist()}  # each checked against its CRC
        for name, data in files.items():
            if session_of(name) is None or "/" in name or "\\" in name:
                raise ValueError(f"{name!r} is not a file of Tune's saved state")
            _check_parses(name, data)
        if not any(n.startswith(EXPERIMENT) for n in files):
            raise ValueError("it holds no experiment state")
    except Exception as e:  # truncated, damaged, not ours: whatever it raises
        raise _unreadable(path, e, "it holds Ray's last whole save of this study") from e
    return files


def _state_files(study_dir: str) -> list[str]:
    fs, root = st.resolve(study_dir)
    infos = fs.get_file_info(pafs.FileSelector(root))
    return sorted(i.base_name for i in infos if i.is_file and session_of(i.base_name))


def put_back_last_save(study_dir: str) -> list[str]:
    """Make the folder's newest saved state the last whole save, before Tune restores from it:
    its files written where they differ, newer state files (a save that never reached the
    folder whole) renamed aside with SUPERSEDED. Returns what changed, for the driver to say.
    Read under the driver's lock: a driver that held the study until now may have saved since
    the checks before the lock."""
    files = read_last_save(study_dir)
    if files is None:
        return []
    session = max(session_of(n) or "" for n in files if n.startswith(EXPERIMENT))
    changed = []
    for name, data in sorted(files.items()):
        path = st.join(study_dir, name)
        if not st.exists(path) or st.read_bytes(path) != data:
            st.write_bytes(path, data)
            changed.append(name)
    fs, root = st.resolve(study_dir)
    for name in _state_files(study_dir):
        if (session_of(name) or "") > session:
            fs.move(f"{root}/{name}", f"{root}/{name}{SUPERSEDED}")
            changed.append(f"{name} (set aside as {name}{SUPERSEDED})")
    return changed


def say_put_back(study_dir: str, changed: list[str]) -> None:
    if changed:  # (on stderr, as the lock's takeover note)
        warn(
            f"note: Ray's state files in {st.redact(study_dir)} were not one whole save (a run "
            f"killed while saving): put back from {BUNDLE}: {', '.join(changed)}"
        )


def check_saved_state(study_dir: str) -> dict[str, bytes] | None:
    """Before the driver's lock and Ray: what --resume will restore from parses. Returns the
    last whole save (None for a study without BUNDLE, whose newest files are checked instead:
    given a truncated one, Ray prints "Failed to restore" and starts the study over)."""
    files = read_last_save(study_dir)
    if st.is_remote(study_dir):
        return files  # (object stores are written whole: no truncated file to find)
    root = Path(study_dir)
    paths = [root / "tuner.pkl"]
    if files is None:
        saved = [p.name for p in root.iterdir() if session_of(p.name)]
        paths += [root / max(n for n in saved if n.startswith(prefix))
                  for prefix in SAVED if any(n.startswith(prefix) for n in saved)]  # fmt: skip
    for path in paths:
        try:
            _check_parses(path.name, path.read_bytes())
        except Exception as e:  # truncated, empty, unreadable: whatever it raises
            raise _unreadable(str(path), e, "Ray would start the study over") from e
    return files


def check_nothing_ran(study_dir: str) -> None:
    """No tuner.pkl: the first run ended before its tuner existed, which is fine only if no trial
    ran (else starting afresh would silently redo and overwrite what finished)."""
    trials = read_table(study_dir, TRIALS)
    if trials is not None and len(trials):
        raise StateError(
            f"--resume: {st.redact(st.join(study_dir, 'tuner.pkl'))} is missing but "
            f"{TRIALS} holds {len(trials)} trial(s): Ray cannot continue this study. Its tables "
            "stay as they are; start a new study (--name NEW) to run more trials"
        )
