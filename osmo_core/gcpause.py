"""Pausing Python's cyclic garbage collector around bulk, acyclic work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Loading (and planning) builds some 10^5 acyclic containers, and the cyclic collector
    would scan them again and again for nothing: pausing it takes ~40% off a 10,000-task spec."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_frozen = False


def freeze_startup_objects() -> None:
    """Move what exists when the control plane starts (modules, classes, configuration, the
    Jupyter server's own objects) out of the cyclic collector's reach, once per process: they
    live as long as the process, and every full pass would scan them again (a 10,000-task
    submission and its cancel run 5-10% faster; docs/benchmarks.md). What the run then makes is
    collected as before."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()
