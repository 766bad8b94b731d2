"""`osmo_jupyter.Client`: workflows from Python (a kernel, a script), over the control plane's API.

    from osmo_jupyter import Client
    wf = Client().submit("train.yaml", set_values={"lr": 0.1})
    wf.wait(); wf.status; wf.tasks; wf.logs("train"); wf.outputs("train"); wf.restart()

Which control plane a bare `Client()` talks to, first match wins:
1. `Client(url, token)` given explicitly;
2. the Jupyter server this kernel was started by: it gives each kernel `OSMO_SERVER_URL` and
   `OSMO_SERVER_TOKEN`, a token of the user who started the kernel (kernel_env.py);
3. the CLI's stored login (`osmo login URL --token T`);
4. the embedded default: a Service in this process on `$OSMO_HOME` (one engine per data
   directory: a Conflict names the process holding it).

Live updates (wait, follow, the widgets) come from the server's events WebSocket, not polling.
Errors are osmo_core's: `ApiError`/`Unreachable` from a server, `InputError` (with located
`problems`) for a spec the server refused, `NotFound`, `Conflict`.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from osmo_core.client import ApiError, Credentials
from osmo_core.errors import InputError, OsmoError, PlacementError, Problem, SpecError
from osmo_core.spec.localfiles import inline_localpaths
from osmo_core.states import TaskStatus, WorkflowStatus

from . import _loop
from ._transport import EmbeddedTransport, RestTransport, Transport

LOG_PAGE = 1000  # log lines per request: the server's default page size
ENV_URL = "OSMO_SERVER_URL"
ENV_TOKEN = "OSMO_SERVER_TOKEN"
WATCH_RECONNECTS = 5

Message = dict[str, Any]


def server_url(serverapp: Any) -> str:
    """The URL a kernel of this server reaches it at."""
    ip = serverapp.ip if serverapp.ip not in ("", "0.0.0.0", "::", "*", "localhost") else None
    host = ip or "127.0.0.1"
    scheme = "https" if serverapp.certfile else "http"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{serverapp.port}{serverapp.base_url.rstrip('/')}"


def export_server_environment(serverapp: Any) -> None:
    """Have this server's IPython kernels load the `%osmo` magics. The server's URL and a
    token reach each kernel through its own environment only (kernel_env.py): a token in the
    server's environment would reach terminals, the agent and every task."""
    # The server's token lives in its identity provider (which has read JUPYTER_TOKEN by now),
    # not in the environment its terminals and kernels start from.
    for name in (ENV_TOKEN, "JUPYTER_TOKEN"):
        os.environ.pop(name, None)
    # `%osmo` in every IPython kernel of this server, with no `%load_ext` (kernel_startup.py
    # chains to the user's own PYTHONSTARTUP).
    startup = str(Path(__file__).with_name("kernel_startup.py"))
    if os.environ.get("PYTHONSTARTUP") not in (None, "", startup):
        os.environ["OSMO_USER_PYTHONSTARTUP"] = os.environ["PYTHONSTARTUP"]
    os.environ["PYTHONSTARTUP"] = startup


_embedded: EmbeddedTransport | None = None
_embedded_lock = threading.Lock()


def _discover(url: str | None, token: str | None, timeout: float) -> Transport:
    if url:
        return RestTransport(url, token if token is not None else "", timeout)
    if os.environ.get(ENV_URL):
        return RestTransport(os.environ[ENV_URL], token or os.environ.get(ENV_TOKEN, ""), timeout)
    creds = Credentials.load()
    if creds is not None:
        return RestTransport(creds.url, token or creds.token, timeout)
    global _embedded
    with _embedded_lock:  # one engine per process (and per data directory)
        if _embedded is None:
            _embedded = EmbeddedTransport()
        return _embedded


@dataclass(frozen=True)
class TaskInfo:
    """A task's latest attempt, as the API reports it."""

    name: str
    status: str
    retry_id: int
    exit_code: int | None
    start_time: float | None
    end_time: float | None
    node: str | None
    output_path: str | None
    message: str | None

    @classmethod
    def from_api(cls, row: dict[str, Any]) -> TaskInfo:
        return cls(
            name=str(row["name"]),
            status=str(row["status"]),
            retry_id=int(row["retry_id"]),
            exit_code=row.get("exit_code"),
            start_time=row.get("start_time"),
            end_time=row.get("end_time"),
            node=row.get("node"),
            output_path=row.get("output_path"),
            message=row.get("message"),
        )

    @property
    def duration(self) -> float | None:
        if self.start_time is None:
            return None
        return (self.end_time or time.time()) - self.start_time

    @property
    def terminal(self) -> bool:
        return TaskStatus(self.status).terminal


def latest_attempts(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task (its highest retry_id), in the API's (spec) order."""
    latest: dict[str, dict[str, Any]] = {}
    for t in tasks:
        if t["name"] not in latest or t["retry_id"] >= latest[t["name"]]["retry_id"]:
            latest[t["name"]] = t
    return list(latest.values())


class Client:
    """A connection to a control plane (see the module docstring for how it is found)."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0):
        self.transport = _discover(url, token, timeout)

    @property
    def url(self) -> str:
        return self.transport.url

    def __repr__(self) -> str:
        return f"<osmo_jupyter.Client {self.transport.kind} {self.url}>"

    # --- kernels inside running tasks -------------------------------------------------------

    def attach(self, wf_id: str, task: str, *, timeout: float = 60.0) -> Any:
        """A jupyter_client `BlockingKernelClient` connected to a new kernel running inside
        the RUNNING task (its environment and working directory; ipykernel must be installed
        there). `kc.execute_interactive(code)`; `kc.osmo.close()` shuts the kernel down."""
        from ._attach import attach

        return attach(self.transport, wf_id, task, timeout)

    # --- workflows --------------------------------------------------------------------------

    def submit(
        self,
        spec: str | Path | dict[str, Any],
        *,
        set_values: dict[str, Any] | None = None,
        pool: str | None = None,
        priority: str = "NORMAL",
        name: str | None = None,
        base: str | Path | None = None,
    ) -> Workflow:
        """Submit a workflow: a YAML file's path, YAML text, or a spec dict. `name` overrides
        the spec's workflow name. `files: [{localpath}]` are read here and sent inline,
        relative to the spec file's folder, else to `base` (default: the current directory).
        Returns at once; InputError (located) on a bad spec."""
        body = {"set_values": set_values or {}, "pool": pool, "priority": priority}
        return Workflow(self, self._post_spec(spec, name, body, base)["id"])

    def validate(
        self,
        spec: str | Path | dict[str, Any],
        *,
        set_values: dict[str, Any] | None = None,
        pool: str | None = None,
        base: str | Path | None = None,
    ) -> str:
        """Check a spec and its placement without running it: the pool it would run in, or
        InputError with every located problem."""
        body = {"set_values": set_values or {}, "pool": pool, "validation_only": True}
        return str(self._post_spec(spec, None, body, base)["pool"])

    def _post_spec(
        self,
        spec: str | Path | dict[str, Any],
        name: str | None,
        body: dict[str, Any],
        base: str | Path | None = None,
    ) -> dict[str, Any]:
        text, file = _spec_source(spec)
        if name is not None:
            text = with_workflow_name(text, name)
        # The server reads no file for its caller: `localpath` files travel inline.
        folder = Path(file).expanduser().parent if file else Path(base or ".").expanduser()
        text, set_values = inline_localpaths(
            text, base=folder, file=file, set_values=body["set_values"]
        )
        body = {**body, "set_values": set_values or {}}
        try:
            return self.transport.request(  # type: ignore[no-any-return]
                "POST", "workflows", body={"spec": text, **body}
            )
        except ApiError as e:
            raise located(e, file) from None
        except InputError as e:  # embedded: the validator's own error, named after the file
            raise _renamed(e, file) from None

    def workflow(self, wf_id: str) -> Workflow:
        """An existing workflow (NotFound / ApiError 404 if there is none)."""
        wf = Workflow(self, wf_id)
        wf.refresh()
        return wf

    def done(self, wf_id: str, task: str) -> dict[str, Any]:
        """Mark an interactive task (`interactive: true`) that waits for its user done: its
        outputs are persisted and its downstream starts. 409 unless it is waiting."""
        return Workflow(self, wf_id).done(task)

    def retry(self, wf_id: str, task: str) -> dict[str, Any]:
        """Run a task held for debugging (`debug: on-failure`) again; `retry_id` of the new
        attempt in the answer. 409 unless it is held."""
        return Workflow(self, wf_id).retry(task)

    def list(self, status: str | list[str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Workflows, newest first."""
        return self.transport.request(  # type: ignore[no-any-return]
            "GET", "workflows", params={"status": status, "limit": limit}
        )

    # --- streams ----------------------------------------------------------------------------

    def events(
        self, workflow_id: str | None = None, *, after: int = 0, logs: bool = True
    ) -> AsyncIterator[Message]:
        """The events WebSocket (stored events after `after`, then live); on the background
        loop."""
        params = {"workflow_id": workflow_id, "after": after, "logs": str(logs).lower()}
        return self.transport.messages("events", params)

    def watch(
        self,
        workflow_id: str,
        on_message: Callable[[Message], None],
        *,
        logs: bool = True,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> Watch:
        """Call `on_message(event)` (in a worker thread, one event at a time) for every event of a
        workflow until it ends or `.stop()`; reconnects after a dropped connection."""
        return Watch(self, workflow_id, on_message, logs=logs, on_error=on_error)

    def iterate(self, stream: AsyncIterator[Message], timeout: float | None) -> Iterator[Message]:
        """A WebSocket's messages, synchronously; TimeoutError when none comes for `timeout`."""
        box: queue.Queue[tuple[str, Any]] = queue.Queue()

        async def pump() -> None:
            try:
                async for msg in stream:
                    box.put(("msg", msg))
            except Exception as e:
                box.put(("err", e))
            else:
                box.put(("end", None))

        fut = _loop.submit(pump())
        try:
            while True:
                try:
                    kind, value = box.get(timeout=timeout)
                except queue.Empty:
                    raise TimeoutError(f"no message from the server in {timeout} s") from None
                if kind == "msg":
                    yield value
                elif kind == "err":
                    raise value
                else:
                    return
        finally:
            fut.cancel()


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
        import asyncio

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
                        if msg.get("type") == "workflow.status" and _wf_terminal(msg["status"]):
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


class Workflow:
    """A submitted workflow. Reads go to the server each time (it owns the state)."""

    def __init__(self, client: Client, wf_id: str):
        self.client = client
        self.id = wf_id
        self._data: dict[str, Any] | None = None
        self._monitor: Any = None

    def __repr__(self) -> str:
        status = self._data["status"] if self._data else "?"
        return f"<Workflow {self.id} {status}>"

    def refresh(self) -> dict[str, Any]:
        """The workflow as the API answers it (groups, every task attempt)."""
        self._data = self.client.transport.request("GET", f"workflows/{self.id}")
        return self._data

    @property
    def data(self) -> dict[str, Any]:
        return self._data if self._data is not None else self.refresh()

    @property
    def status(self) -> str:
        return str(self.refresh()["status"])

    @property
    def tasks(self) -> list[TaskInfo]:
        """Each task's latest attempt, in spec order."""
        return [TaskInfo.from_api(t) for t in latest_attempts(self.refresh()["tasks"])]

    def task(self, name: str) -> dict[str, Any]:
        """A task's latest attempt plus `attempts` (every attempt)."""
        try:
            return self.client.transport.request(  # type: ignore[no-any-return]
                "GET", f"workflows/{self.id}/tasks/{name}"
            )
        except ApiError as e:
            if e.status != 404 or "no task" in e.message:
                raise
        # a server without GET tasks/{task}: the same answer from the workflow
        attempts = [t for t in self.refresh()["tasks"] if t["name"] == name]
        if not attempts:
            raise ApiError(404, f"workflow {self.id!r} has no task {name!r}", "not found")
        return {**attempts[-1], "attempts": attempts}

    def wait(self, timeout: float | None = None) -> str:
        """Block until the workflow ends (events, not polling); its final status.
        TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        stream = self.client.events(self.id, logs=False)
        for msg in self.client.iterate(stream, timeout):
            if msg.get("type") == "workflow.status" and _wf_terminal(msg["status"]):
                self._data = None
                if self._monitor is not None:  # what the user sees is final too
                    self._monitor.settle(timeout=5)
                return str(msg["status"])
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.id} did not finish in {timeout} s")
        return self.status  # the server closed the stream: ask

    def logs(
        self,
        task: str,
        *,
        follow: bool = False,
        retry_id: int | None = None,
        start: int = 0,
        timeout: float | None = None,
    ) -> list[str] | Iterator[str]:
        """A task's log lines (text). `follow=True`: an iterator that goes on until the
        attempt ends (TimeoutError when nothing arrives for `timeout` s)."""
        if follow:
            return (
                ln["text"]
                for ln in self.follow_lines(task, retry_id=retry_id, start=start, timeout=timeout)
            )
        texts: list[str] = []
        while True:  # the server answers a page at a time
            page = self.log_lines(task, retry_id=retry_id, start=start + len(texts), limit=LOG_PAGE)
            texts += [ln["text"] for ln in page]
            if len(page) < LOG_PAGE:
                return texts

    def log_lines(
        self,
        task: str,
        *,
        retry_id: int | None = None,
        start: int = 0,
        limit: int | None = None,
        tail: int | None = None,
    ) -> list[dict[str, Any]]:
        """One page of a task's log lines as the API answers them: {n, ts, stream, text};
        `tail=N`: the last N lines instead."""
        params = {"retry_id": retry_id, "start": start, "limit": limit, "tail": tail}
        return self.client.transport.request(  # type: ignore[no-any-return]
            "GET", f"workflows/{self.id}/tasks/{task}/logs", params=params
        )

    def follow_lines(
        self,
        task: str,
        *,
        retry_id: int | None = None,
        start: int = 0,
        timeout: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Lines as they are written, until the attempt ends: the server's log-follow
        WebSocket, or where it has none, the stored lines then the events WebSocket's."""
        from ._follow import follow

        return follow(self, task, retry_id=retry_id, start=start, timeout=timeout)

    def outputs(self, task: str) -> str | None:
        """Where the task's latest attempt put its `{{output}}` (as the API reports it)."""
        return self.task(task).get("output_path")

    def cancel(self) -> str:
        answer = self.client.transport.request("POST", f"workflows/{self.id}/cancel")
        self._data = None
        return str(answer["status"])

    def done(self, task: str) -> dict[str, Any]:
        """See `Client.done`."""
        answer = self.client.transport.request("POST", f"workflows/{self.id}/tasks/{task}/done")
        self._data = None
        return answer  # type: ignore[no-any-return]

    def retry(self, task: str) -> dict[str, Any]:
        """See `Client.retry`."""
        answer = self.client.transport.request("POST", f"workflows/{self.id}/tasks/{task}/retry")
        self._data = None
        return answer  # type: ignore[no-any-return]

    def restart(self) -> Workflow:
        """Run the stored spec again (same values and pool) as a new workflow."""
        answer = self.client.transport.request("POST", f"workflows/{self.id}/restart")
        return Workflow(self.client, answer["id"])

    def validated_spec(self) -> dict[str, Any]:
        """The spec as the server validated it (JSON: tasks, inputs, resources...)."""
        answer = self.client.transport.request("GET", f"workflows/{self.id}/spec")
        return json.loads(answer["spec"])  # type: ignore[no-any-return]

    def spec(self, rendered: bool = False) -> str:
        answer = self.client.transport.request("GET", f"workflows/{self.id}/spec")
        return str(answer["rendered" if rendered else "original"])

    # --- display ------------------------------------------------------------------------------

    @property
    def monitor(self) -> Any:
        """The live `WorkflowMonitor` widget of this workflow (one per Workflow object)."""
        if self._monitor is None:
            from .widgets import WorkflowMonitor

            self._monitor = WorkflowMonitor(self)
        return self._monitor

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """In a kernel: the live monitor, plus static HTML/Markdown/text for front ends without
        widgets (nbconvert, GitHub) showing the same facts."""
        from .render import upstream_of, workflow_html, workflow_markdown, workflow_text

        data = self.refresh()
        upstream = upstream_of(
            self.client.transport.request("GET", f"workflows/{self.id}/spec")["spec"]
        )
        bundle: dict[str, Any] = {
            "text/plain": workflow_text(data),
            "text/html": workflow_html(data, upstream),
            "text/markdown": workflow_markdown(data, upstream),
        }
        if _in_kernel():
            widget = self.monitor._repr_mimebundle_()
            widget = widget[0] if isinstance(widget, tuple) else widget
            bundle.update({k: v for k, v in widget.items() if "widget" in k})
        return bundle

    def _repr_html_(self) -> str:
        from .render import workflow_html

        return workflow_html(self.refresh())

    def _repr_markdown_(self) -> str:
        from .render import workflow_markdown

        return workflow_markdown(self.refresh())


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (widgets can be shown), False in a terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def _wf_terminal(status: str) -> bool:
    try:
        return WorkflowStatus(status).terminal
    except ValueError:
        return False


# --- specs and errors --------------------------------------------------------------------------


def _spec_source(spec: str | Path | dict[str, Any]) -> tuple[str | dict[str, Any], str | None]:
    """(YAML text or dict, file name for error messages)."""
    if isinstance(spec, dict):
        return spec, None
    if isinstance(spec, Path) or ("\n" not in spec and spec.endswith((".yaml", ".yml"))):
        path = Path(spec).expanduser()
        try:
            return path.read_text(encoding="utf-8"), str(spec)
        except OSError as e:
            raise InputError(f"cannot read {spec}: {e.strerror}") from None
    return spec, None


def with_workflow_name(spec: str | dict[str, Any], name: str) -> str | dict[str, Any]:
    """The spec with `workflow.name` set to `name`; YAML text keeps its line numbers when the
    name is already there (so the validator's lines still match the user's text)."""
    if isinstance(spec, dict):
        return {**spec, "workflow": {**(spec.get("workflow") or {}), "name": name}}
    try:
        root = yaml.compose(spec)
    except yaml.YAMLError:
        return spec  # the server reports the syntax error, located
    wf = _mapping_value(root, "workflow")
    node = _mapping_value(wf, "name")
    if node is not None and isinstance(node, yaml.ScalarNode):
        start, end = node.start_mark.index, node.end_mark.index
        return spec[:start] + yaml.safe_dump(name, default_style='"').strip() + spec[end:]
    data = yaml.safe_load(spec)
    if not isinstance(data, dict):
        return spec
    return with_workflow_name(data, name)  # type: ignore[return-value]


def _mapping_value(node: Any, key: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if getattr(k, "value", None) == key), None)


def located(e: ApiError, file: str | None) -> OsmoError:
    """A server's 400/422 as the validator's located problems (in the user's file's name)."""
    if e.status not in (400, 422):
        return e
    problems = [
        Problem(
            message=str(d.get("message", "")),
            field=str(d.get("field") or ""),
            file=file if file and d.get("file") in (None, "<spec>") else d.get("file"),
            line=d.get("line"),
            column=d.get("column"),
            hint=d.get("hint"),
        )
        for d in e.details
    ] or [Problem(e.message)]
    cls = {"placement": PlacementError, "invalid spec": SpecError}.get(e.reason or "", InputError)
    return cls(problems)


def _renamed(e: InputError, file: str | None) -> InputError:
    if file is None:
        return e
    problems = [replace(p, file=file) if p.file in (None, "<spec>") else p for p in e.problems]
    return type(e)(problems)
