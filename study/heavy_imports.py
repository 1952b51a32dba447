"""The heavy stack (torch, Ray Tune, pandas, Optuna) imported with the garbage collector paused.

Those imports leave about 400,000 objects that the cyclic collector tracks, and it runs about a
thousand times meanwhile (seven of them over everything) to find almost nothing to free: a sixth
of the CPU that a driver or a trial worker spends importing (benchmarks/results/import_gc.txt:
0.83 and 0.87 times with it paused). Every study pays the imports at least twice, in its driver
and in each trial worker, so both import with the collector paused; what the imports made is then
frozen (gc.freeze), so that the collections of the run itself skip it too.
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
