"""The events WebSocket: stored events, then live ones.

The events WebSocket sends the stored events after `after` first, then live ones (deduplicated
by id across the switch). A client too slow to keep up is never allowed to stall the engine: its
bounded queue is dropped, it receives `{"type": "resync"}`, and the stored events it missed are
replayed before live ones continue (live `task.log` lines lost in the gap are not replayed).
A user without a workflow filter gets the events of their own workflows.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado import websocket

from osmo_core.events import Event, Overflow

from ..schemas import EventsQuery
from .base import OsmoHandler, OsmoWebSocket, api

REPLAY_PAGE = 1000


class LastEventHandler(OsmoHandler):
    """The newest stored event's id: where a client that has just read a list starts its
    events WebSocket (`after`), so nothing the list holds is replayed."""

    @api
    async def get(self) -> None:
        self.reply({"last_event_id": (await self.service()).store.max_event_id()})


class EventsWebSocket(OsmoWebSocket):
    """Stored events after `after`, then live ones; one JSON object per message."""

    _pump: asyncio.Task[None] | None = None
    _sub: Any = None

    async def handshake(self) -> None:
        self._query = q = self.query_model(EventsQuery)
        if q.workflow_id is not None:
            self._svc = await self.workflow_for(q.workflow_id)
        else:
            self._svc = await self.service()
        # Without a workflow filter a user gets their own workflows' events only.
        self._only_user = None if self.who.is_admin or q.workflow_id else self.who.name
        self._owners: dict[str, bool] = {}

    def _visible(self, wf_id: str) -> bool:
        if self._only_user is None:
            return True
        mine = self._owners.get(wf_id)
        if mine is None:  # an event is committed before it is announced: the row exists
            mine = self._owners[wf_id] = self._svc.store.workflow_owner(wf_id) == self._only_user
        return mine

    def open(self, *args: Any, **kwargs: Any) -> None:
        q = self._query
        # Subscribe before reading the store: an event is persisted before it is published, so
        # every event is in the replay, the queue, or both (then skipped by id).
        self._sub = self._svc.subscribe(q.workflow_id, logs=q.logs)
        self._pump = asyncio.create_task(self._run(q.after), name="osmo-events-ws")

    async def _run(self, last: int) -> None:
        try:
            last = await self._replay(last)
            while (item := await self._sub.get()) is not None:
                if isinstance(item, Overflow):
                    await self._send({"type": "resync", "dropped": item.dropped})
                    last = await self._replay(last)
                elif (item.id is None or item.id > last) and self._visible(item.workflow_id):
                    await self._send(item.to_json())  # serialized once for all subscribers
                    if item.id is not None:
                        last = item.id
            self.close(1001, "server shutting down")
        except websocket.WebSocketClosedError:
            pass
        finally:
            self._sub.close()

    async def _replay(self, last: int) -> int:
        q = self._query
        while True:
            rows = self._svc.store.events_since(
                last, q.workflow_id, limit=REPLAY_PAGE, user=self._only_user
            )
            for row in rows:
                await self._send(Event.from_row(row).to_dict())
                last = row["id"]
            if len(rows) < REPLAY_PAGE:
                return last

    def on_close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._pump is not None:
            self._pump.cancel()
