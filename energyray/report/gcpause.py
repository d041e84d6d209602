"""The cyclic garbage collector paused while the report reads a store and builds its page.

A page of 100,000 trials allocates millions of short-lived objects (rows, trace lists, labels) that
form no reference cycles; each of the collector's full passes walks every live object (plotly's
classes, the frames), which cost ~1 s of such a page for nothing collected. Reference counting
still frees everything as usual; the collector runs again once the call returns.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def paused(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` run with the cyclic collector off (as it was after: a nested call leaves it off)."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return call
