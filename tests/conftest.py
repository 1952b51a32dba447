from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from study.heavy_imports import gc_paused

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ (scripts, not installed) is imported by tests too
    sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
MANGA_DIR = SHARED / "data" / "manga"
MANGA_CLASSES = ("angry", "crying", "embarrassed", "happy", "pleased", "sad", "shock")

# Tests must be deterministic and light on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Token authentication for every Ray and driver of the suite, as on a user's cluster. Ray 2.60
# turns it on by itself for a new local Ray, never for a driver given an address: without this, a
# study joining the test head (shared_ray) sends no token and is refused ("Authentication token is
# missing or incorrect"), which is how CI, whose environment lacks the variable, failed twice.
os.environ["RAY_AUTH_MODE"] = "token"
# Every Ray a test starts (in this process, or a study's own) starts no idle workers for its
# first driver: each imports Ray (~0.5 CPU-s) and a study's trials run in workers of their own.
os.environ.setdefault("RAY_prestart_worker_first_driver", "0")

# This test process's own Ray temp dir, inherited by the studies it starts. `ray.init()` without an
# address joins the cluster named in <temp dir>/ray/ray_current_cluster, which `ray start` and
# ray.cluster_utils.Cluster (test_cluster) write there: with the machine's /tmp/ray a test would
# join a user's running cluster, or the one a parallel test (pytest -n 2) started. Short, because
# Ray's unix sockets live under it (108-byte path limit). Removed at the end (pytest_unconfigure).
# Made once per process: test modules import this file again (`from conftest import ...`), and
# xdist's workers inherit the controller's environment (hence the pid).
_MINE = f"{os.getpid()}:"
if not os.environ.get("STUDY_TESTS_RAY_TMPDIR", "").startswith(_MINE):
    os.environ["STUDY_TESTS_RAY_TMPDIR"] = _MINE + tempfile.mkdtemp(prefix="rt", dir="/tmp")
RAY_TMPDIR = os.environ["STUDY_TESTS_RAY_TMPDIR"].removeprefix(_MINE)
os.environ["RAY_TMPDIR"] = RAY_TMPDIR


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
            name = (
                f"{i} - Copy ({c}).png"
                if i == 0
                else f"{cls}_{i}.jpg"
                if i == 1
                else f"{cls}_{i}.png"
            )
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
                face_png(
                    root / ch / f"{ch}_{em}" / f"{ch}_{em}_{n}.png", seed=ci * 100 + ei * 10 + n
                )
    return root


requires_manga = pytest.mark.skipif(not MANGA_DIR.is_dir(), reason=f"{MANGA_DIR} not present")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on `n` threads inside: for tiny tensors, OpenMP spin-waiting next to other busy
    processes costs 10-100x (measured: 0.02 s vs 0.3-3 s per GoogLeNet step on 2 shared cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def prepared_once(tmp_path_factory, worker_id: str, name: str, source: str) -> Path:
    """The embedded toon set at size `source`, prepared once for the test run: under pytest -n the
    workers share it (their base temp dirs' parent is this run's), the first to come prepares it
    and the other waits (9 CPU-s for 'small' on this machine). Tests only read it; its decode
    cache is written atomically (study.data.store), so two studies may fill it at once."""
    import fcntl

    from study.data import prepare

    if worker_id == "master":  # one process: its own temp dir
        d = tmp_path_factory.mktemp(name)
        prepare("toon", source=source, data_dir=d, seed=0)
        return d
    d = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    done = d.with_name(f"{d.name}.done")
    with open(f"{d}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            prepare("toon", source=source, data_dir=d, seed=0)
            done.touch()
    return d


@pytest.fixture(scope="session")
def toon_dir(tmp_path_factory, worker_id) -> Path:
    """The embedded toon data set, 'small' size (840 images)."""
    return prepared_once(tmp_path_factory, worker_id, "data", "small")


@pytest.fixture(scope="session")
def tiny_toon(tmp_path_factory, worker_id) -> Path:
    """The 84-image toon set, for studies that check how a run goes, not what trials learn."""
    return prepared_once(tmp_path_factory, worker_id, "tiny", "tiny")


@pytest.fixture(scope="session")
def shared_ray() -> Iterator[dict[str, str]]:
    """What a study's environment needs to join this test process's Ray head (tests/ray_head.py):
    a study that joins it skips starting and stopping its own Ray, about 40 % of a tiny study
    (benchmarks/results/study_startup.txt). For studies whose test is not about the local Ray
    that `python -m study.run` starts on a laptop."""
    from ray_head import ray_head

    # no log monitor: every study here joins with log_to_driver=False (measured: 6.6 CPU-s over
    # a suite run for one head's, which tails every worker's log files)
    with ray_head(dashboard=False, prestart_workers=False, log_monitor=False) as head:
        yield {k: head.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")} | {
            "RAY_ADDRESS": head.address
        }


# a test's own local Ray: the 2 cores, no dashboard, no worker logs in the test's output
QUIET_RAY = {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False,
             "configure_logging": False}  # fmt: skip


@contextlib.contextmanager
def joined_ray(shared: dict[str, str]) -> Iterator[None]:
    """This test process as a driver of its Ray head (`shared_ray`), for in-process studies whose
    test is not about starting Ray: Ray's own processes (GCS, raylet, dashboard, agents, log
    monitor) cost about 11 CPU-s per start. Ray reads its token once per process: an earlier
    local `ray.init()` here left ~/.ray/auth_token in that cache, which the head refuses, so the
    cache is read again with the head's token file set, and once more after."""
    import ray
    from ray._raylet import AuthenticationTokenLoader  # the cache has no public reset

    key = "RAY_AUTH_TOKEN_PATH"
    before = os.environ.get(key)
    os.environ[key] = shared[key]
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        ray.init(address=shared["RAY_ADDRESS"], log_to_driver=False, configure_logging=False)
        yield
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before
        AuthenticationTokenLoader.instance().reset_cache()


# A CLI study at test size takes 20-60 s on 2 quiet cores and several times that at load 8-12.
# Past STUDY_TIMEOUT_S its process is killed and the test fails naming the command
# (TimeoutExpired); the test waiting for it gets STUDY_TEST_TIMEOUT_S from pytest-timeout, whose
# limit covers the fixtures it sets up too (a shared study is paid by the first test using it).
STUDY_TIMEOUT_S = 300
STUDY_TEST_TIMEOUT_S = STUDY_TIMEOUT_S + 60


def at_least_timeout(item: pytest.Item, seconds: float) -> None:
    """Give a test at least `seconds` of pytest-timeout's limit (a larger own limit stays)."""
    marker = item.get_closest_marker("timeout")
    current = (marker.args or [marker.kwargs.get("timeout")])[0] if marker else None
    if current is None or current < seconds:
        item.add_marker(pytest.mark.timeout(seconds), append=False)


def _runs_study_cli(item: pytest.Item) -> bool:
    """The test function, or a fixture it uses (asha_study: tests in several files), calls
    study_cli."""
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info else ():
        funcs += [d.func for d in defs]
    codes = [f.__code__ for f in funcs if hasattr(f, "__code__")]
    return any("study_cli" in code.co_names for code in codes)


def _work_unit(item: pytest.Item) -> str:
    """What one parallel worker runs as a whole (pytest -n 2): a test file, so that its module
    fixtures (a Ray, a prepared study) are built once; the session's ASHA study is one unit.
    test_spaces_cover's studies (about 140 s, the largest file) are two units, manga spaces and
    the rest, so that both workers can share them (each then builds that module's Ray once), and
    each row of the fault table (tests/run/test_fault_table.py) is a unit of its own."""
    if "asha_study" in item.fixturenames:
        return "asha_study"
    if item.path.stem == "test_fault_table":  # each row's study is its own: rows spread out
        return item.name
    if item.path.stem == "test_spaces_cover" and "ray_cluster" in item.fixturenames:
        return "spaces_cover_" + ("manga" if "manga" in item.name else "other")
    return item.path.stem


def _is_slow(item: pytest.Item) -> bool:
    return _runs_study_cli(item) or item.get_closest_marker("study") is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[None]:
    """Collecting imports torch, Ray, pandas and Plotly in each worker: with the garbage collector
    paused, as a study's driver and trial workers import them (study.heavy_imports)."""
    with gc_paused():
        yield


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups set here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _runs_study_cli(item):
            at_least_timeout(item, STUDY_TEST_TIMEOUT_S)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    # Workers take units in collection order (--no-loadscope-reorder in pyproject's addopts;
    # xdist would sort them by test count): the units with the most slow tests go first, so
    # that the short ones fill the end and both workers finish together (a stable sort: the
    # same order in every worker, as xdist requires).
    slow: dict[str, int] = {}
    for item in items:
        unit = _work_unit(item)
        item.add_marker(pytest.mark.xdist_group(unit))
        slow[unit] = slow.get(unit, 0) + _is_slow(item)
    items.sort(key=lambda item: -slow[_work_unit(item)])


def pytest_unconfigure(config: pytest.Config) -> None:
    """The suite's process holds torch, Ray and pandas too: skip collecting them at its exit
    (study.cli.leaving says why)."""
    shutil.rmtree(RAY_TMPDIR, ignore_errors=True)  # made by this process (above)
    gc.freeze()


def study_cli(*args: str, timeout: float = STUDY_TIMEOUT_S, **popen) -> subprocess.CompletedProcess:
    """`python -m study.run ARGS` in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "study.run", *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=timeout,
        **popen,
    )


ASHA_SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="asha test", max_epochs=4, grace_period=1,
                         reduction_factor=2, num_samples=8, image_size=32, sampler="random")
def space(trial):
    return {"model": "vanilla_cnn", "width": 8, "depth": 3, "head_dense": [],
            "lr": trial.suggest_float("lr", 1e-5, 3e-2, log=True), "batch_size": 64}
"""


@dataclass
class Study:
    dir: Path
    trials: pd.DataFrame
    epochs: pd.DataFrame
    stdout: str
    stderr: str = ""  # the console's noise checks (tests/run/test_console.py)


@pytest.fixture(scope="session")
def asha_study(toon_dir, tmp_path_factory, shared_ray) -> Study:
    """A short real study (8 trials, up to 4 epochs) in which ASHA stops the weak trials, on the
    test process's Ray head (no Ray start and stop of its own)."""
    tmp = tmp_path_factory.mktemp("asha")
    (tmp / "asha_space.py").write_text(ASHA_SPACE)
    r = study_cli(
        "--space",
        str(tmp / "asha_space.py"),
        "--data-dir",
        str(toon_dir),
        "--storage",
        str(tmp / "s"),
        "--name",
        "asha",
        "--max-concurrent",
        "2",
        "--no-report",
        env={**os.environ, **shared_ray},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sd = tmp / "s" / "asha"
    return Study(
        sd,
        pd.read_parquet(sd / "trials.parquet"),
        pd.read_parquet(sd / "epochs.parquet"),
        r.stdout,
        r.stderr,
    )


def tree_snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under `root` with (size, mtime_ns, mode): equal snapshots before and
    after a command mean it changed nothing there (bad-input tests: nothing outside its output)."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (
            st.st_size if p.is_file() else 0,
            st.st_mtime_ns,
            st.st_mode,
        )
    return out
