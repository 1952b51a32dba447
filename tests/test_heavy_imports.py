"""The heavy imports run with the garbage collector paused (study.heavy_imports), and the process
goes on with it on: in the helper, in a trial worker's first import, and in the driver."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest
from conftest import REPO

from study.heavy_imports import gc_paused


def test_the_collector_is_off_inside_then_on_with_what_was_made_frozen() -> None:
    frozen = gc.get_freeze_count()
    with gc_paused():
        assert not gc.isenabled()
        made = [[] for _ in range(1000)]  # tracked containers: what an import leaves
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(made)


def test_a_caller_that_paused_it_keeps_it_paused_and_nothing_is_frozen() -> None:
    gc.disable()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled() and gc.get_freeze_count() == frozen
    finally:
        gc.enable()


def test_the_collector_is_back_on_after_an_import_that_fails() -> None:
    with pytest.raises(ModuleNotFoundError), gc_paused():
        import no_such_module_here  # noqa: F401
    assert gc.isenabled()


# a fresh interpreter: what a trial worker imports first, and a driver up to its checks
PROBE = """
import gc, sys
frozen = gc.get_freeze_count()
if sys.argv[1] == "trainable":
    import study.tuning.trainable
else:
    from study.run.__main__ import main
    assert main(["--space", "no_such_space"]) == 2  # refused after the driver's imports
    assert "torch" in sys.modules
print(gc.isenabled(), gc.get_freeze_count() > frozen + 100_000)
"""


@pytest.mark.parametrize("process", ["trainable", "driver"])
def test_a_trial_worker_and_a_driver_import_torch_paused_and_go_on_collecting(process) -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE, process], cwd=REPO, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-2:] == ["True", "True"], r.stdout + r.stderr[-2000:]


def test_the_import_benchmark_measures_a_child_with_and_without_the_pause() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import import_gc
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    for paused in (False, True):
        assert 0 < import_gc.cpu_s(["json"], ["csv", "decimal"], paused) < 30
