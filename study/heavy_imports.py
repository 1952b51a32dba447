"""The heavy stack (torch, Ray Tune, pandas, Optuna) imported with the garbage collector paused.

Those imports create millions of objects, and CPython's cyclic collector runs hundreds of times
meanwhile to find almost nothing to free: about a quarter of the CPU a driver or a trial worker
spends importing (benchmarks/import_gc.py). Every study pays the imports at least twice, in its
driver and in each trial worker, so both import with the collector paused; what the imports made
is then frozen (gc.freeze), so that the collections of the run itself skip it too.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off inside; on leaving, everything alive is frozen and the collector is on.
    Where a caller had already turned it off, it stays off and nothing is frozen."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
