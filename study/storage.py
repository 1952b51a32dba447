"""Paths that may be local or on shared storage (`s3://`, `gs://`, anything `pyarrow.fs` knows).

A plain path or `file://` is local; everything else goes through `pyarrow.fs.FileSystem.from_uri`,
the same resolution Ray Tune applies to `storage_path`, so the study, Ray and the report agree on
where a URI points. Credentials and endpoints come from the environment the way pyarrow reads them
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL` for an S3-compatible server,
instance profiles, `gcloud` logins); URI query parameters (`?endpoint_override=...`) also work.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import io
import os
import re
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs
from fsspec.implementations.local import LocalFileSystem

from study.results.errors import not_written

LOCAL_SCHEMES = ("", "file")
# a plain name for a folder of ours (studies, data sets): one path component, nothing that climbs
NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
# credentials in a URI: `scheme://user:password@host` and query keys such as access_key, secret_key,
# session_token (pyarrow accepts both); a match ends with the URI: at a quote, a space, or the
# punctuation of the sentence it ends
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"?#]+@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&][^=&\s'\"#]*(?:key|secret|token|password|passwd|credential|signature)"
    r"[^=&\s'\"#]*)=[^&\s'\"#]*?(?=[:,;.)]?(?:[&\s'\"#]|$))",
    re.IGNORECASE,
)


def check_name(name: str, what: str) -> str:
    """`name` if it is a plain name (letters, digits, `-`, `_`, `.`; not `.` or `..`), which
    joined to a folder stays inside it; else a ValueError naming `what` (an option or field)."""
    if not NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"{what} {name!r}: expected a plain name of letters, digits, '-', '_' and '.' "
            "(not '.' or '..', no '/'), at most 255 characters"
        )
    return name


def redact(text: str) -> str:
    """`text` with the credentials of any URI in it replaced by `***` (user:password@ and
    secret-looking query values), for study.json, errors and reports."""
    text = _USERINFO.sub(r"\g<scheme>***@", str(text))
    return _SECRET_QUERY.sub(r"\g<key>=***", text)


def is_remote(path: str | Path) -> bool:
    """True for a URI on shared storage (`s3://...`); False for a local path or `file://`."""
    return not isinstance(path, Path) and urlsplit(str(path)).scheme not in LOCAL_SCHEMES


def local_path(path: str | Path) -> Path:
    """The absolute local path of a plain path or `file://` URI."""
    text = str(path)
    if text.startswith("file://"):
        text = urlsplit(text).path
    return Path(text).expanduser().resolve()


def absolute(path: str | Path) -> str:
    """A URI unchanged, a local path made absolute (so it means the same in every process)."""
    return str(path) if is_remote(path) else str(local_path(path))


def join(base: str | Path, *parts: str) -> str:
    """`base/part/...`, keeping a URI's query (`?endpoint_override=...`) at the end."""
    if not is_remote(base):
        return str(Path(local_path(base), *parts))
    u = urlsplit(str(base))
    path = "/".join([u.path.rstrip("/"), *(p.strip("/") for p in parts)])
    return urlunsplit((u.scheme, u.netloc, path, u.query, ""))


def basename(path: str | Path) -> str:
    return urlsplit(str(path)).path.rstrip("/").rsplit("/", 1)[-1]


@functools.lru_cache(maxsize=16)
def _filesystem(scheme: str, netloc: str, query: str) -> pafs.FileSystem:
    # one client per bucket and options: from_uri may resolve the bucket's region per call
    return pafs.FileSystem.from_uri(urlunsplit((scheme, netloc, "", query, "")))[0]


def resolve(path: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path on it) for a local path or a URI."""
    if not is_remote(path):
        return pafs.LocalFileSystem(), str(local_path(path))
    u = urlsplit(str(path))
    try:
        fs = _filesystem(u.scheme, u.netloc, u.query)
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
        raise ValueError(f"cannot open {path!r}: {e}") from e
    # the bucket without any user:password@ in front (pyarrow takes those as credentials)
    return fs, (u.netloc.rpartition("@")[2] + u.path).rstrip("/")


def check_reachable(path: str | Path, what: str) -> None:
    """Fail now, not after Ray has started, when a URI's bucket is missing or not readable with
    the credentials at hand. Local paths are created on demand, so they always pass."""
    if not is_remote(path):
        return
    u = urlsplit(str(path))
    bucket = urlunsplit((u.scheme, u.netloc, "", u.query, ""))
    try:
        found = exists(bucket)
    except (OSError, ValueError) as e:  # ValueError: a scheme pyarrow does not know
        raise ValueError(f"{what} {path}: cannot reach {bucket} ({e})") from e
    if not found:
        raise ValueError(f"{what} {path}: bucket {bucket} does not exist")


def _type(path: str | Path) -> pafs.FileType:
    fs, p = resolve(path)
    return fs.get_file_info(p).type


def exists(path: str | Path) -> bool:
    return _type(path) != pafs.FileType.NotFound


def is_file(path: str | Path) -> bool:
    return _type(path) == pafs.FileType.File


def mtime(path: str | Path) -> float | None:
    """Modification time in seconds since the epoch (upload time on object stores)."""
    fs, p = resolve(path)
    info = fs.get_file_info(p)
    return info.mtime.timestamp() if info.mtime is not None else None


def read_bytes(path: str | Path) -> bytes:
    fs, p = resolve(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def read_text(path: str | Path) -> str:
    return read_bytes(path).decode()


def _umask() -> int:
    """The process's umask, read without changing it (other threads may be creating files);
    the os.umask round trip only where /proc does not report it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Fault injection for the fault table (tests/run/test_fault_table.py): STUDY_FAULT_WRITE=
# ACTION:NAME@N makes this process's N-th publish of a file whose name starts with NAME kill the
# process ("kill", SIGKILL: the temporary is written, the rename never happens) or fail as a full
# disk does ("enospc")
FAULT_WRITE = "STUDY_FAULT_WRITE"
_published: collections.Counter[str] = collections.Counter()


def _injected_fault(dest: Path) -> None:
    action, _, target = os.environ.get(FAULT_WRITE, "").partition(":")
    name, _, nth = target.partition("@")
    if not name or not dest.name.startswith(name):
        return
    _published[name] += 1
    if _published[name] != int(nth or 1):
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest))


def _publish(tmp: str, dest: Path) -> None:
    """Rename a finished temporary file into place with the mode a plain open() would give it:
    mkstemp makes it 0600, which would hide results in a shared folder from teammates."""
    os.chmod(tmp, 0o666 & ~_umask())
    _injected_fault(dest)
    os.replace(tmp, dest)


# what tempfile.mkstemp names our temporary siblings: ".NAME." + 8 random characters + ".tmp"
_PARTIAL = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_partial_writes(folder: str | Path) -> list[str]:
    """Delete the temporary files that a process killed while publishing left in `folder` (its
    top level, where the state files are): only names of the form this module gives them."""
    if is_remote(folder) or not Path(folder).is_dir():
        return []  # (an object store shows no partial upload)
    gone = [p for p in Path(folder).iterdir() if p.is_file() and _PARTIAL.fullmatch(p.name)]
    for p in gone:
        p.unlink(missing_ok=True)
    return [p.name for p in gone]


class _AtomicFile(io.RawIOBase):
    """A file that appears at `dest` only when closed: written to a temporary sibling, renamed
    into place by close() (`write_bytes`, and Ray's writes through `ray_filesystem`)."""

    def __init__(self, dest: Path):
        super().__init__()
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        self._file, self._dest = os.fdopen(fd, "wb"), dest

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        return self._file.write(data)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._file.close()
        try:
            _publish(self._tmp, self._dest)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Drop what was written: the old file stays as it was, and no temporary is left."""
        self._file.close()
        Path(self._tmp).unlink(missing_ok=True)


class _AtomicLocalHandler(pafs.FSSpecHandler):
    def open_output_stream(self, path: str, metadata: dict) -> pa.NativeFile:
        return pa.PythonFile(_AtomicFile(Path(path)), mode="w")


def ray_filesystem(path: str | Path) -> pafs.FileSystem | None:
    """The filesystem Ray Tune writes a study's files with: on a local disk one whose files
    appear whole (temporary sibling + rename), because Ray writes its experiment state in place
    and a driver killed mid-write would leave a truncated file that `Tuner.restore` cannot read.
    None for a URI: Ray resolves it itself, and an object store shows an upload only complete."""
    if is_remote(path):
        return None
    return pafs.PyFileSystem(_AtomicLocalHandler(LocalFileSystem()))


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Writes to `path` inside: a full disk, a read-only mount or a folder without write
    permission is one line naming `path` and what to do (`study.results.errors.StudyFileError`),
    not an OSError deep in a study's traceback; other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        named = not_written(str(path), e)
        if named is None:
            raise
        raise named from e


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace a file so that readers see the old or the new content, never half of one.

    Local: write a temporary sibling and rename. Object stores: one upload of bytes already
    complete in memory; the object appears only when the upload completes.
    """
    if not is_remote(path):
        dest = local_path(path)
        with writing(dest):
            f = _AtomicFile(dest)
            try:
                f.write(data)
            except BaseException:  # the old file stays as it was, and no temporary is left
                f.discard()
                raise
            f.close()  # publishes it (or, failing, leaves the old file and no temporary)
        return
    fs, p = resolve(path)
    with fs.open_output_stream(p) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def delete_file(path: str | Path) -> None:
    fs, p = resolve(path)
    if fs.get_file_info(p).type == pafs.FileType.File:
        fs.delete_file(p)


def is_empty(path: str | Path, ignore: tuple[str, ...] = ()) -> bool:
    """True for a folder with nothing in it but the names in `ignore`, or nothing at `path`."""
    fs, p = resolve(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        return True
    if info.type != pafs.FileType.Directory:
        return False
    found = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    return all(i.base_name in ignore for i in found)


def list_dirs(path: str | Path) -> list[str]:
    """Names of the directories directly under `path`, sorted; [] if it does not exist."""
    fs, p = resolve(path)
    infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def _copy(src: str | Path, dest: str | Path) -> None:
    """Stream one file (data sets can be gigabytes); a local destination appears by rename."""
    src_fs, src_path = resolve(src)
    if is_remote(dest):
        dest_fs, dest_path = resolve(dest)
        pafs.copy_files(src_path, dest_path, src_fs, dest_fs)
        return
    target = local_path(dest)
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            pafs.copy_files(src_path, tmp, src_fs, pafs.LocalFileSystem())
            _publish(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def download(path: str | Path, dest: Path) -> None:
    """Copy one file (local or remote) to a local path."""
    _copy(path, dest)


def upload(src: Path, path: str | Path) -> None:
    """Copy one local file to `path` (local or remote)."""
    _copy(src, path)


def cache_root() -> Path:
    """This node's cache for things that must be on local disk: `$STUDY_CACHE_DIR`, else
    `~/.cache/study`. Decoded tensors of remote data sets and Optuna's SQLite file live here."""
    return Path(os.environ.get("STUDY_CACHE_DIR") or Path.home() / ".cache" / "study")
