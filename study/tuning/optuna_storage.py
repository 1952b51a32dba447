"""Where a study's Optuna trials are stored: the study folder's optuna.db (copied to and from
remote storage), a journal file, or a database URL the user names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlsplit

import optuna
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from study import storage as st
from study.results.errors import StudyFileError, one_line, why

OPTUNA_DB = "optuna.db"


def optuna_db(study_dir: str) -> Path:
    """Where Optuna's SQLite file is used: in the study directory when that is local; SQLite
    cannot live on an object store, so for s3:// or gs:// in this machine's cache (the same path
    for the same study every time: Ray's saved searcher reconnects to it on resume)."""
    if not st.is_remote(study_dir):
        return Path(study_dir) / OPTUNA_DB
    key = hashlib.sha256(study_dir.encode()).hexdigest()[:12]
    return st.cache_root() / "optuna" / f"{st.basename(study_dir)}-{key}" / OPTUNA_DB


def pull_optuna_db(study_dir: str) -> None:
    """Before a resume on remote storage: fetch the uploaded copy unless this machine's is newer
    (a driver that died before uploading leaves the only up-to-date copy here)."""
    local, remote = optuna_db(study_dir), st.join(study_dir, OPTUNA_DB)
    if not st.is_remote(study_dir) or not st.is_file(remote):
        return
    if not local.exists() or local.stat().st_mtime < (st.mtime(remote) or 0):
        st.download(remote, local)


def check_optuna_db(study_dir: str) -> None:
    """--resume, before Ray starts: the study's optuna.db (the sampler's history, which Ray's
    saved searcher reconnects to) is a readable SQLite file holding Optuna's tables. Damaged, it
    would fail inside Ray's restore in a traceback naming no file; here it is a StudyFileError
    naming it. The check writes nothing but what opening it in Optuna would: the rollback of a
    transaction a killed driver left in its journal (a read-only connection cannot, and would
    call a sound file unreadable). On s3:// or gs:// it fetches the copy the resume will use."""
    pull_optuna_db(study_dir)
    path = optuna_db(study_dir)
    if not path.exists():  # Optuna creates it
        return
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
            db.execute("SELECT study_name FROM studies").fetchall()
    except sqlite3.Error as e:  # "file is not a database", "no such table: studies", ...
        raise StudyFileError(path, f"not a readable Optuna database ({why(e)})") from e
    if verdict != "ok":
        raise StudyFileError(path, f"a damaged database ({one_line(verdict)})")


def push_optuna_db(study_dir: str) -> None:
    """After a run on remote storage: a copy next to the results (optuna-dashboard, resumes)."""
    local = optuna_db(study_dir)
    if st.is_remote(study_dir) and local.exists():
        st.upload(local, st.join(study_dir, OPTUNA_DB))


JOURNAL_SCHEME = "journal"


OPTUNA_STORAGE_FORMS = (
    "an RDB URL (postgresql+psycopg://HOST/DB, mysql://..., sqlite:///PATH) or "
    "journal:///ABSOLUTE/PATH.log"
)


def _driver_hint(url: str) -> str:
    """What to do about a missing database driver. SQLAlchemy 2.0 (which Optuna allows) reads a
    plain postgresql:// as psycopg2, 2.1 as psycopg 3, the postgres extra's driver: a URL that
    names +psycopg means the same under both."""
    u = make_url(url)
    if u.get_backend_name() == "postgresql" and find_spec("psycopg") is not None:
        named = u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return f"psycopg 3 is installed: name it, {st.redact(named)}"
    return "for PostgreSQL: pip install -e '.[postgres]' and postgresql+psycopg://..."


def optuna_storage_url(url: str | None, study_dir: str) -> str:
    """The study's Optuna storage: --optuna-storage, else the SQLite file of `optuna_db`."""
    return url or f"sqlite:///{optuna_db(study_dir)}"


def _journal_path(url: str) -> Path:
    u = urlsplit(url)
    if u.netloc or not u.path.startswith("/"):
        raise ValueError(f"--optuna-storage {url}: expected journal:///ABSOLUTE/PATH.log")
    return Path(u.path)


def _is_journal(path: Path) -> bool:
    """Empty, or its first line is one of Optuna's journal records (JSON with an op_code)."""
    with path.open("rb") as f:
        first = f.readline()
    if not first:
        return True
    try:
        return "op_code" in json.loads(first)
    except (ValueError, TypeError):
        return False


def open_optuna_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna's storage for a URL: `journal:///path` is a JournalStorage log file (one file,
    appended under a file lock; put it on storage that the driver and optuna-dashboard share),
    anything else an RDBStorage (PostgreSQL or MySQL: several readers while the study runs)."""
    if urlsplit(url).scheme == JOURNAL_SCHEME:
        return optuna.storages.JournalStorage(JournalFileBackend(str(_journal_path(url))))
    return optuna.storages.RDBStorage(url)


def check_optuna_storage(url: str, name: str, resume: bool) -> None:
    """Before Ray starts: the URL has a known form, its database driver is installed, the
    database answers, and a new study does not take the name of one already stored there
    (Ray's searcher would silently continue that study: load_if_exists)."""
    if urlsplit(url).scheme == JOURNAL_SCHEME:
        path = _journal_path(url)
        if not path.parent.is_dir():
            raise ValueError(f"--optuna-storage {url}: directory {path.parent} does not exist")
        if not path.exists():  # checked without creating it: a failed start leaves nothing
            return
        if not _is_journal(path):  # Optuna would append to any file it is given
            raise ValueError(f"--optuna-storage {url}: {path} exists and is not an Optuna journal")
    else:
        try:
            make_url(url).get_dialect().import_dbapi()
        except ArgumentError as e:
            raise ValueError(
                f"--optuna-storage {st.redact(url)}: expected {OPTUNA_STORAGE_FORMS}"
            ) from e
        except ImportError as e:
            raise ValueError(
                f"--optuna-storage {st.redact(url)}: its database driver is not installed "
                f"({e}; {_driver_hint(url)})"
            ) from e
    try:
        names = optuna.get_all_study_names(open_optuna_storage(url))
    except Exception as e:  # the driver's own error says what is wrong (host, password, file)
        # its first line only (SQLAlchemy appends a "Background on this error" line)
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"--optuna-storage {st.redact(url)}: cannot open it ({why})") from e
    if name in names and not resume:
        raise ValueError(
            f"--optuna-storage {st.redact(url)} already holds a study named {name!r}: "
            "choose another --name (or --resume it)"
        )
