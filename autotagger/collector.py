"""Pausing Python's cyclic garbage collector around a bulk pass.

A bulk tagging pass allocates tens of thousands of small containers per batch (scores, evidence, rows) that all
live until the batch is stored. The collector takes them for long-lived objects, and its full collections walk
every object of the process (the models, Django, scikit-learn) again and again during one batch: measured in a
fast-mode pass of 2,000 recipes, a sixth of the time went to collections. What a pass allocates is freed by
reference counting when it ends, so pausing the collector for the pass costs no memory; cycles it made, if any,
go at the next collection after it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (collection resumes after it, if it was on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
