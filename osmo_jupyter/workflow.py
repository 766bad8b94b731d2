"""`osmo_jupyter.Workflow`: one submitted workflow, from Python (see client.py for how its
`Client` is found). Reads go to the server each time; it owns the state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from osmo_core.client import ApiError

from ._follow import follow
from .cells import annotate
from .records import TaskInfo, latest_attempts, workflow_ended
from .render import upstream_of, workflow_html, workflow_markdown, workflow_text

if TYPE_CHECKING:  # a Workflow is handed its client; Client.submit makes Workflows
    from .client import Client

LOG_PAGE = 1000  # log lines per request: the server's default page size


class Workflow:
    """A submitted workflow. Reads go to the server each time (it owns the state)."""

    def __init__(self, client: Client, wf_id: str):
        self.client = client
        self.id = wf_id
        self._data: dict[str, Any] | None = None
        self._monitor: Any = None
        # cell scripts' file names -> their cells (`%osmo run-tasks`), named in log lines
        self.sources: dict[str, str] = {}

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
            # the server's answer is JSON (Any)
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
            if msg.get("type") == "workflow.status" and workflow_ended(msg["status"]):
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
            texts += [self.annotate(ln["text"]) for ln in page]
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
        """One page of a task's log lines as the API answers them (not annotated): {n, ts,
        stream, text}; `tail=N`: the last N lines instead."""
        params = {"retry_id": retry_id, "start": start, "limit": limit, "tail": tail}
        # the server's answer is JSON (Any)
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
        lines = follow(self, task, retry_id=retry_id, start=start, timeout=timeout)
        return (self._annotated(ln) for ln in lines)

    def annotate(self, text: str) -> str:
        """A log line naming a cell's script, with the notebook cell it came from."""
        return annotate(text, self.sources)

    def _annotated(self, line: dict[str, Any]) -> dict[str, Any]:
        return {**line, "text": self.annotate(line["text"])} if self.sources else line

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
        # the server's answer is JSON (Any)
        return answer  # type: ignore[no-any-return]

    def retry(self, task: str) -> dict[str, Any]:
        """See `Client.retry`."""
        answer = self.client.transport.request("POST", f"workflows/{self.id}/tasks/{task}/retry")
        self._data = None
        # the server's answer is JSON (Any)
        return answer  # type: ignore[no-any-return]

    def restart(self, from_task: str | None = None, all: bool = False) -> Workflow:
        """A new workflow from this ended one (same spec, values and pool), OSMO's way: the
        groups that failed or never ran run again, the completed ones' outputs are reused
        (their tasks show `reused_from`). `from_task`: rerun that task's group and everything
        downstream too; `all`: rerun everything."""
        body = {"from_task": from_task, "all": all}
        answer = self.client.transport.request("POST", f"workflows/{self.id}/restart", body=body)
        new = Workflow(self.client, answer["id"])
        new.sources = self.sources  # the same scripts
        return new

    def validated_spec(self) -> dict[str, Any]:
        """The spec as the server validated it (JSON: tasks, inputs, resources...)."""
        answer = self.client.transport.request("GET", f"workflows/{self.id}/spec")
        # a JSON document (Any)
        return json.loads(answer["spec"])  # type: ignore[no-any-return]

    def spec(self, rendered: bool = False) -> str:
        answer = self.client.transport.request("GET", f"workflows/{self.id}/spec")
        return str(answer["rendered" if rendered else "original"])

    # --- display ------------------------------------------------------------------------------

    @property
    def monitor(self) -> Any:
        """The live `WorkflowMonitor` widget of this workflow (one per Workflow object)."""
        if self._monitor is None:
            # imported here: anywidget is for kernels, and a script's Client needs none of it
            from .widgets import WorkflowMonitor

            self._monitor = WorkflowMonitor(self)
        return self._monitor

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """In a kernel: the live monitor, plus static HTML/Markdown/text for front ends without
        widgets (nbconvert, GitHub) showing the same facts."""
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
        return workflow_html(self.refresh())

    def _repr_markdown_(self) -> str:
        return workflow_markdown(self.refresh())


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (widgets can be shown), False in a terminal IPython."""
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None
