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

import os
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from osmo_core.client import ApiError, Credentials
from osmo_core.errors import InputError

from . import _loop
from ._transport import EmbeddedTransport, RestTransport, Transport
from .server_env import ENV_TOKEN, ENV_URL
from .specfile import located, renamed, spec_source, with_workflow_name
from .watch import Message, Watch
from .workflow import Workflow

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
        from ._attach import attach  # jupyter_client and the tunnels: only when attaching

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
        from osmo_core.spec.localfiles import inline_localpaths  # the spec models: on use

        text: str | Mapping[str, Any]
        text, file = spec_source(spec)
        if name is not None:
            text = with_workflow_name(text, name)
        # The server reads no file for its caller: `localpath` files travel inline.
        folder = Path(file).expanduser().parent if file else Path(base or ".").expanduser()
        text, set_values = inline_localpaths(
            text, base=folder, file=file, set_values=body["set_values"]
        )
        body = {**body, "set_values": set_values or {}}
        try:
            # the server's answer is JSON (Any)
            return self.transport.request(  # type: ignore[no-any-return]
                "POST", "workflows", body={"spec": text, **body}
            )
        except ApiError as e:
            raise located(e, file) from None
        except InputError as e:  # embedded: the validator's own error, named after the file
            raise renamed(e, file) from None

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
        # the server's answer is JSON (Any)
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
