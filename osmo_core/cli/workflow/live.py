"""Following workflows that run here (`osmo workflow run`, `resume`) to their end: live
progress on the terminal, and Ctrl-C cancels them (a second one leaves them running)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...errors import Conflict
from ...events import Event, Overflow
from ...states import WorkflowStatus
from ..common import EXIT_FAILED, EXIT_OK, Output

if TYPE_CHECKING:
    from ...service import Service

QUIET = {"PROCESSING", "INITIALIZING"}  # momentary steps, left out of the plain progress log


async def follow(
    service: Service, ids: list[str], sub: Any, out: Output, early_interrupts: int = 0
) -> int:
    """Show progress until every workflow ends; Ctrl-C cancels them (a second one leaves)."""
    loop = asyncio.get_running_loop()
    interrupted = 0
    cancels: list[asyncio.Future[None]] = []

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted += 1
        if interrupted == 1:
            out.info(
                "interrupted: canceling (Ctrl-C again to leave the tasks running; "
                "`osmo workflow resume` picks them up)"
            )
            cancels.extend(asyncio.ensure_future(_quiet_cancel(service, w)) for w in ids)
        else:
            waiter.cancel()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    view = LiveView(service, ids, out)
    pump = asyncio.create_task(view.pump(sub))
    waiter = asyncio.ensure_future(asyncio.gather(*(service.wait(i) for i in ids)))
    for _ in range(early_interrupts):
        on_sigint()
    try:
        statuses: list[WorkflowStatus] = await waiter
    except asyncio.CancelledError:
        return 130
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        view.close()
    for wf_id in ids:
        out.summary(service.get(wf_id))
    if interrupted:
        return 130
    return EXIT_OK if all(s == WorkflowStatus.COMPLETED for s in statuses) else EXIT_FAILED


async def _quiet_cancel(service: Service, wf_id: str) -> None:
    with contextlib.suppress(Conflict):  # it ended meanwhile
        await service.cancel(wf_id)


class LiveView:
    """A table redrawn in place on a terminal; one line per change otherwise."""

    def __init__(self, service: Service, ids: list[str], out: Output):
        self.service = service
        self.ids = ids
        self.out = out
        self.tasks: dict[tuple[str, str], dict[str, Any]] = {}
        self.live: Any = None
        if out.err.isatty() and not out.json:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(file=out.err), refresh_per_second=8, transient=True)
            self.live.start()

    async def pump(self, sub: Any) -> None:
        async for ev in sub:
            if isinstance(ev, Overflow):
                continue
            if ev.workflow_id not in self.ids:
                continue
            self.show(ev)

    def show(self, ev: Event) -> None:
        stamp = datetime.fromtimestamp(ev.ts).strftime("%H:%M:%S")
        if ev.type == "task.log":
            line = f"[{ev.task}] {ev.payload.get('text', '')}"
            if self.live is not None:
                self.live.console.print(line, markup=False, highlight=False)
            else:
                print(line, file=self.out.err, flush=True)
            return
        if ev.type == "task.status" and ev.task:
            self.tasks[(ev.workflow_id, ev.task)] = {
                "status": ev.status,
                "retry": ev.retry_id,
                "ts": ev.ts,
                "exit": ev.payload.get("exit_code"),
            }
        if ev.type in ("task.hold", "task.storage"):  # waiting for the user, or a disk fault
            line = f"{stamp} {ev.workflow_id} {ev.task} {ev.payload.get('message', '')}"
            if self.live is not None:
                self.live.console.print(line, markup=False, highlight=False)
            else:
                print(line, file=self.out.err, flush=True)
            return
        if self.live is not None:
            self.live.update(self._table())
        elif ev.type == "workflow.status" or (ev.type == "task.status" and ev.status not in QUIET):
            what = ev.task or "workflow"
            extra = f" exit {ev.payload['exit_code']}" if "exit_code" in ev.payload else ""
            retry = f" (retry {ev.retry_id})" if ev.retry_id else ""
            print(
                f"{stamp} {ev.workflow_id} {what} {ev.status}{extra}{retry}",
                file=self.out.err,
                flush=True,
            )

    def _table(self) -> Any:
        from rich.table import Table

        counts: dict[str, int] = {}
        for t in self.tasks.values():
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        table = Table(
            title=" ".join(self.ids)
            + "  "
            + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            show_edge=False,
        )
        for col in ("task", "status", "attempt", "exit"):
            table.add_column(col)
        rows = sorted(self.tasks.items(), key=lambda kv: kv[1]["ts"])
        for (_, name), t in rows[-30:]:  # the most recent changes fit a screen
            table.add_row(
                name,
                t["status"],
                str((t["retry"] or 0) + 1),
                "" if t["exit"] is None else str(t["exit"]),
            )
        return table

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
