"""A workflow's tasks: get one, mark an interactive one done, retry one held for debugging."""

from __future__ import annotations

from .base import OsmoHandler, api


class TaskDoneHandler(OsmoHandler):
    """An interactive task waiting for its user is done (409 when it is not waiting)."""

    @api
    async def post(self, wf_id: str, task: str) -> None:
        self.reply(await (await self.workflow_for(wf_id)).done(wf_id, task))


class TaskRetryHandler(OsmoHandler):
    """A task held for debugging runs again as a new attempt (409 when it is not held)."""

    @api
    async def post(self, wf_id: str, task: str) -> None:
        self.reply(await (await self.workflow_for(wf_id)).retry(wf_id, task))


class TaskHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str, task: str) -> None:
        self.reply((await self.workflow_for(wf_id)).task(wf_id, task))
