"""Running a pipeline's coroutine from synchronous code, a notebook included.

`asyncio.run` refuses to start inside a running event loop, which is where a Jupyter cell runs. There the
coroutine gets a loop of its own in a worker thread, and the caller waits for it: the cell blocks as any
synchronous call does, and the notebook's loop is left alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefgen") as pool:
        return pool.submit(asyncio.run, coro).result()
