"""One background asyncio loop per process, for the client's WebSockets and the embedded Service.

A kernel's own loop is busy running the user's cell (and `asyncio.run` refuses inside it), so
live updates and the in-process engine run on a daemon thread of their own; synchronous callers
hand it coroutines with `run()` and wait with a timeout.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The background loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            new = asyncio.new_event_loop()
            threading.Thread(target=new.run_forever, name="osmo-client-loop", daemon=True).start()
            _loop = new
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Schedule `coro` on the background loop; the future answers from any thread."""
    return asyncio.run_coroutine_threadsafe(coro, loop())


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coro` on the background loop and wait for it (TimeoutError after `timeout` s)."""
    if _on_loop_thread():
        coro.close()
        raise RuntimeError("osmo_jupyter: blocking call made from the client's own loop")
    return submit(coro).result(timeout)


def _on_loop_thread() -> bool:
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False
