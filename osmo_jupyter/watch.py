"""`Client.watch`: a running subscription to one workflow's events, on the background loop,
reconnecting after a dropped connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from osmo_core.client import ApiError
from osmo_core.errors import OsmoError

from . import _loop
from .records import workflow_ended

if TYPE_CHECKING:  # a Watch is handed its client; it never makes one
    from .client import Client

WATCH_RECONNECTS = 5

Message = dict[str, Any]


class Watch:
    """A running subscription to one workflow's events (see `Client.watch`)."""

    def __init__(
        self,
        client: Client,
        workflow_id: str,
        on_message: Callable[[Message], None],
        *,
        logs: bool,
        on_error: Callable[[BaseException], None] | None,
    ):
        self.client = client
        self.workflow_id = workflow_id
        self.last_id = 0
        self.done = threading.Event()
        self._on_message = on_message
        self._on_error = on_error
        self._logs = logs
        self._future = _loop.submit(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tries = 0
        try:
            while tries <= WATCH_RECONNECTS:
                try:
                    async for msg in self.client.events(
                        self.workflow_id, after=self.last_id, logs=self._logs
                    ):
                        tries = 0
                        if msg.get("id"):
                            self.last_id = msg["id"]
                        # off the loop: a handler may call the API (the embedded engine
                        # runs on this loop), and the next message waits for it (order)
                        await loop.run_in_executor(None, self._on_message, msg)
                        if msg.get("type") == "workflow.status" and workflow_ended(msg["status"]):
                            return
                except (OSError, OsmoError) as e:
                    if isinstance(e, ApiError) and e.status < 500:
                        raise
                tries += 1
                await asyncio.sleep(0.2 * tries)
        except Exception as e:
            if self._on_error is not None:
                self._on_error(e)
        finally:
            self.done.set()

    def stop(self) -> None:
        self._future.cancel()
        self.done.set()
