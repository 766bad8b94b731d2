r"""A task's terminals: jupyter_server's terminals API and terminado's WebSocket.

Terminals (for JupyterLab's Terminal widget): jupyter_server's terminals API and terminado's
WebSocket, with the task's URL as the base URL, so @jupyterlab/services' TerminalManager and
TerminalConnection work unchanged when given ServerConnection settings whose `baseUrl` and
`wsUrl` end in `osmo/api/v1/workflows/{id}/tasks/{task}/`:

    GET    {task}/api/terminals                 [{"name", "last_activity", "workflow_id",
                                                  "task", "user"}]
    POST   {task}/api/terminals   {"name"?: \w+} → the model; the task's shell (bash -i, else
                                                  sh -i) starts on a PTY (409 name taken)
    GET    {task}/api/terminals/{name}          the model (404 when gone)
    DELETE {task}/api/terminals/{name}          204; the shell gets SIGHUP
    WS     {task}/terminals/websocket/{name}    ["setup", {}] first; then ["stdin", text] and
           ["set_size", rows, cols, ...] in, ["stdout", text] out, ["disconnect", 1] at the end

In TypeScript (the side panel):

    const base = URLExt.join(app.serviceManager.serverSettings.baseUrl,
                             'osmo/api/v1/workflows', wf, 'tasks', task) + '/';
    const settings = ServerConnection.makeSettings({
      ...app.serviceManager.serverSettings, baseUrl: base, wsUrl: base.replace(/^http/, 'ws')
    });
    const manager = new TerminalManager({ serverSettings: settings });
    const session = await manager.startNew();            // or manager.connectTo({ model })
    const widget = new MainAreaWidget({ content: new Terminal(session) });

A terminal outlives its viewers (a reloaded tab re-attaches and is sent recent output) until
its shell exits, it is deleted, the task's agent connection is lost, its task ends (viewers are
sent "task WF/TASK ended (STATUS); this terminal is closed", then ["disconnect", 1]), or 10
minutes pass with no viewer (osmo_core/interactive/terminals.py).
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from tornado import websocket

from osmo_core.interactive.taskend import wait_ended
from osmo_core.interactive.terminals import SHELL, Terminal

from ..schemas import TerminalRequest
from .audit import audit
from .base import OsmoHandler, OsmoWebSocket, api

if TYPE_CHECKING:
    from osmo_core.service import Service


class TerminalsHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str, task: str) -> None:
        svc = await self.workflow_for(wf_id)
        svc.task(wf_id, task)
        self.reply([t.model() for t in svc.interactive.terminals.list(wf_id, task)])

    @api
    async def post(self, wf_id: str, task: str) -> None:
        body = self.body_model(TerminalRequest) if self.request.body else TerminalRequest()
        svc = await self.workflow_for(wf_id)
        svc.task(wf_id, task)

        def start(size: tuple[int, int]) -> Any:
            return svc.interactive.exec(wf_id, task, SHELL, pty=size)

        attempt = int(svc.task(wf_id, task)["retry_id"])
        term = await svc.interactive.terminals.create(
            wf_id,
            task,
            self.who.name,
            start,
            name=body.name,
            task_end=lambda: wait_ended(svc, wf_id, task, attempt),
        )
        self.log.info("osmo: %s opened terminal %s in %s/%s", self.who.name, term.name, wf_id, task)
        await audit(svc, self.who.name, wf_id, task, "terminal", terminal=term.name)
        self.reply(term.model())


class TerminalHandler(OsmoHandler):
    async def _find(self, wf_id: str, task: str, name: str) -> tuple[Service, Terminal]:
        svc = await self.workflow_for(wf_id)
        return svc, svc.interactive.terminals.get(wf_id, task, name)

    @api
    async def get(self, wf_id: str, task: str, name: str) -> None:
        self.reply((await self._find(wf_id, task, name))[1].model())

    @api
    async def delete(self, wf_id: str, task: str, name: str) -> None:
        svc, term = await self._find(wf_id, task, name)
        await svc.interactive.terminals.terminate(term)
        self.set_status(204)
        self.finish()


class TerminalWebSocket(OsmoWebSocket):
    """terminado's protocol: JSON arrays ["stdin", text], ["set_size", rows, cols, ...] in;
    ["setup", {}], ["stdout", text], ["disconnect", 1] out."""

    _term: Terminal | None = None

    async def handshake(self, wf_id: str, task: str, name: str) -> None:
        svc = await self.workflow_for(wf_id)
        self._terms = svc.interactive.terminals
        self._term = self._terms.get(wf_id, task, name)

    def open(self, *args: Any, **kwargs: Any) -> None:
        assert self._term is not None
        self.set_nodelay(True)  # a keystroke's echo is one small message: no Nagle delay
        self.write_message(json.dumps(["setup", {}]))
        self._terms.attach(self._term, self)

    def output(self, text: str) -> None:
        with contextlib.suppress(websocket.WebSocketClosedError):
            self.write_message(json.dumps(["stdout", text]))

    def ended(self) -> None:
        with contextlib.suppress(websocket.WebSocketClosedError):
            self.write_message(json.dumps(["disconnect", 1]))
        self.close(1000, "the terminal ended")

    def on_message(self, message: str | bytes) -> None:
        term = self._term
        try:
            msg = json.loads(message)
            if term is None or not isinstance(msg, list) or not msg:
                return
            if msg[0] == "stdin" and isinstance(msg[1], str):
                term.write(msg[1])
            elif msg[0] == "set_size":
                term.resize(self, int(msg[1]), int(msg[2]))
        except (ValueError, IndexError, TypeError) as e:
            self.log.info("osmo: terminal: ignored message %r: %s", message[:200], e)

    def on_close(self) -> None:
        if self._term is not None:
            self._terms.detach(self._term, self)
            self._term = None
