"""Files of a task's workdir, over the agent's SFTP.

Files (`osmo workflow rsync`; paths relative to the task's workdir, SFTP on the agent):

    GET  {task}/files?path=P                    P and everything under it (FilesListing)
    GET  {task}/files/content?path=P            the bytes; X-Osmo-Mtime, X-Osmo-Mode
    PUT  {task}/files/content?path=P&mtime=T&mode=M   the body (streamed) becomes the file
    POST {task}/files/dirs  {"paths": [...]}    folders, with parents
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado import web

from osmo_core.errors import OsmoError
from osmo_core.interactive import files

from ..schemas import FilesQuery, MkdirRequest, PutFileQuery
from .audit import audit
from .base import AUTH_RESOURCE, ApiError, OsmoHandler, api, from_osmo_error

_closing: set[asyncio.Future[None]] = set()  # clean-ups of broken uploads still running


async def task_sftp(
    handler: OsmoHandler, wf_id: str, task: str, *, window: str | None = None, **what: Any
) -> Any:
    """An SFTP session in the task's workdir for its owner (or an admin), audited as `files`."""
    svc = await handler.workflow_for(wf_id)
    svc.task(wf_id, task)  # 404 for a task the workflow does not have
    await audit(svc, handler.who.name, wf_id, task, "files", window=window, **what)
    return await svc.interactive.sftp(wf_id, task)


class FilesHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str, task: str) -> None:
        q = self.query_model(FilesQuery)
        async with await task_sftp(self, wf_id, task, op="list", path=q.path) as sftp:
            self.reply(await files.listing(sftp, q.path))


class DirsHandler(OsmoHandler):
    @api
    async def post(self, wf_id: str, task: str) -> None:
        body = self.body_model(MkdirRequest)
        async with await task_sftp(self, wf_id, task, window="write", op="write") as sftp:
            await files.makedirs(sftp, body.paths)
        self.reply({"paths": body.paths}, 201)


@web.stream_request_body
class FileContentHandler(OsmoHandler):
    """GET: the file's bytes (`X-Osmo-Mtime`, `X-Osmo-Mode`); PUT: the body becomes the file
    (streamed: the SFTP file is opened before the body arrives, each chunk written as it
    comes), with `mtime` and `mode` set, parents made."""

    _upload: files.Upload | None = None
    _sftp: Any = None

    # no login redirect to pass on: this API answers 401/403 (OsmoHandler.prepare)
    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.request.method != "PUT" or self._finished:
            return
        try:
            self.require_user()
            allowed = self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE)
            if asyncio.iscoroutine(allowed):
                allowed = await allowed
            if not allowed:
                raise ApiError(403, "not authorized to write osmo", "forbidden")
            wf_id, task = self.path_kwargs["wf_id"], self.path_kwargs["task"]
            q = self.query_model(PutFileQuery)
            self._sftp = await task_sftp(self, wf_id, task, window="write", op="write")
            self._upload = await files.Upload(self._sftp, q.path, q.mtime, q.mode).open()
        except OsmoError as e:
            raise from_osmo_error(e) from e

    # tornado awaits data_received when it is a coroutine (stream_request_body)
    async def data_received(self, chunk: bytes) -> None:  # type: ignore[override]
        if self._upload is not None:
            await self._upload.write(chunk)

    @api
    async def put(self, wf_id: str, task: str) -> None:
        assert self._upload is not None
        await self._upload.done()
        up, self._upload = self._upload, None
        self.reply({"path": up.path, "size": up.size}, 201)

    @api
    async def get(self, wf_id: str, task: str) -> None:
        q = self.query_model(FilesQuery)
        async with await task_sftp(self, wf_id, task, window="read", op="read") as sftp:
            info, chunks = await files.read(sftp, q.path)
            self.set_header("Content-Length", str(info["size"]))
            self.set_header("X-Osmo-Mtime", str(info["mtime"]))
            self.set_header("X-Osmo-Mode", oct(info["mode"]))
            self.set_header("Content-Type", "application/octet-stream")
            async for data in chunks:
                self.write(data)
                await self.flush()
        self.finish(set_content_type="application/octet-stream")

    def on_finish(self) -> None:
        self._cleanup()

    def on_connection_close(self) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        up, sftp = self._upload, self._sftp
        self._upload = self._sftp = None

        async def close() -> None:
            if up is not None:
                await up.abort()  # the body never finished: no half file is left
            if sftp is not None:
                sftp.exit()

        if up is not None or sftp is not None:
            task = asyncio.ensure_future(close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
