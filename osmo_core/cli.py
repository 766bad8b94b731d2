"""`osmo` command line.

Exit codes and output conventions: cli_common.py.

`validate`, `run` and `resume` work on the embedded default (this process runs the engine);
`login`, `token`, `version` and `workflow submit | query | list | logs | cancel | restart | spec`
talk to a server (cli_remote.py); `pool list` and `resource list` describe the server when
logged in, the embedded default otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from . import __version__
from .cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    Output,
    add_format,
    add_set_values,
    print_pools,
    print_resources,
    report,
)
from .cli_dataset import add_dataset_parser, run_dataset
from .cli_remote import add_remote_parsers, is_remote, run_remote
from .config import PRIORITIES, load_config
from .errors import Conflict, InputError, OsmoError
from .events import Event, Overflow
from .service import Service
from .spec import LoadedSpec, parse_set_values
from .states import WorkflowStatus

_QUIET = {"PROCESSING", "INITIALIZING"}  # momentary steps, left out of the plain progress log


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="osmo", description="Run OSMO workflows (DAGs of tasks).")
    p.add_argument("--version", action="version", version=f"osmo {__version__}")
    p.add_argument("--config", help="config file (default: $XDG_CONFIG_HOME/osmo/osmo_config.py)")
    top = p.add_subparsers(
        dest="group",
        required=True,
        metavar="{workflow,pool,resource,dataset,login,logout,token,version,server}",
    )

    wf = top.add_parser("workflow", help="validate and run workflows")
    cmds = wf.add_subparsers(
        dest="cmd",
        required=True,
        metavar="{validate,run,resume,submit,query,list,logs,cancel,restart,done,retry,spec}",
    )

    def spec_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("file", help="workflow YAML file ('-' for stdin)")
        add_set_values(sp)
        sp.add_argument(
            "--pool",
            help="pool to place the workflow in (default: the spec's or the configured default)",
        )
        add_format(sp)

    v = cmds.add_parser("validate", help="check a spec and its placement; exit 2/3 on problems")
    spec_args(v)

    r = cmds.add_parser("run", help="run a workflow here, showing live status; exit 0/1")
    spec_args(r)
    r.add_argument("--dry-run", action="store_true", help="print the rendered spec and stop")
    r.add_argument("--priority", choices=list(PRIORITIES), default="NORMAL")
    r.add_argument("--logs", action="store_true", help="stream task output to the terminal")

    rs = cmds.add_parser(
        "resume",
        help="reload unfinished workflows (after a crash or an "
        "interrupted run) and follow them to the end",
    )
    rs.add_argument("ids", nargs="*", help="workflow ids to follow (default: all unfinished)")
    add_format(rs)
    rs.add_argument("--logs", action="store_true", help="stream task output to the terminal")

    pool = top.add_parser("pool", help="pools and their capacity")
    pool_cmds = pool.add_subparsers(dest="cmd", required=True, metavar="{list}")
    pl = pool_cmds.add_parser("list", help="pools, platforms and machines")
    add_format(pl)
    res = top.add_parser("resource", help="machines: capacity and what is free")
    res_cmds = res.add_subparsers(dest="cmd", required=True, metavar="{list}")
    add_format(res_cmds.add_parser("list", help="every machine of every pool"))

    top.add_parser("server", help="run the headless server (same as `jupyter osmo`)")
    add_dataset_parser(top)
    add_remote_parsers(top, cmds)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["server"]:
        # `osmo server ARGS` is `jupyter osmo ARGS` (the server lives in osmo_jupyter).
        os.execv(sys.executable, [sys.executable, "-m", "osmo_jupyter", *argv[1:]])
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_dispatch(args))
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace) -> int:
    out = Output(args.format if hasattr(args, "format") else "text")
    if is_remote(args):
        return await run_remote(args, out)
    try:
        config = load_config(args.config)
        service = Service(config)
        if args.group == "dataset":
            return await run_dataset(args, out)
        if args.group in ("pool", "resource"):
            await _load_capacity(service)
            if args.group == "pool":
                print_pools(service.pools_info(), out)
            else:
                print_resources(service.resources(), out)
            return EXIT_OK
        if args.cmd == "resume":
            return await _resume(service, args, out)
        loaded = _load(service, args)
        if args.cmd == "validate":
            await _load_capacity(service)
            pool = service.check_placement(loaded, args.pool)
            out.result(
                {
                    "valid": True,
                    "workflow": loaded.workflow.name,
                    "pool": pool,
                    "tasks": len(loaded.workflow.all_tasks()),
                },
                f"{loaded.file or '<spec>'}: valid ({len(loaded.workflow.all_tasks())} "
                f"tasks, pool {pool})",
            )
            return EXIT_OK
        if args.dry_run:
            print(
                loaded.rendered
                if args.format == "text"
                else json.dumps(loaded.spec.model_dump(mode="json", by_alias=True))
            )
            return EXIT_OK
        return await _run(service, loaded, args, out)
    except OsmoError as e:
        return report(e, out)


def _load(service: Service, args: argparse.Namespace) -> LoadedSpec:
    if args.file == "-":
        text, name = sys.stdin.read(), "<stdin>"
    else:
        try:
            with open(args.file, encoding="utf-8") as f:
                text, name = f.read(), args.file
        except OSError as e:
            raise InputError(f"cannot read {args.file}: {e.strerror}") from None
    return service.load(text, file=name, set_values=parse_set_values(args.set_values))


async def _load_capacity(service: Service) -> None:
    """Placement needs each backend's machines, not the engine or the store."""
    for name, backend in service.backends.items():
        service.scheduler.set_nodes(name, await backend.nodes())


# --- run / resume --------------------------------------------------------------------------


async def _run(service: Service, loaded: LoadedSpec, args: argparse.Namespace, out: Output) -> int:
    async with service:
        sub = service.subscribe(logs=args.logs)
        # A Ctrl-C while submitting (the task may already be launched) is counted, and _follow
        # acts on it; without this it interrupted the run and left the tasks running.
        loop, early = asyncio.get_running_loop(), []
        loop.add_signal_handler(signal.SIGINT, early.append, None)
        try:
            wf_id = await service.submit(loaded, pool=args.pool, priority=args.priority)
        except BaseException:
            loop.remove_signal_handler(signal.SIGINT)
            raise
        out.info(f"submitted {wf_id} ({len(loaded.workflow.all_tasks())} tasks)")
        return await _follow(service, [wf_id], sub, out, early_interrupts=len(early))


async def _resume(service: Service, args: argparse.Namespace, out: Output) -> int:
    async with service:
        sub = service.subscribe(logs=args.logs)
        ids = args.ids or service.unfinished()
        if not ids:
            out.info("nothing to resume: no unfinished workflow")
            sub.close()
            return EXIT_OK
        out.info(f"following {', '.join(ids)}")
        return await _follow(service, ids, sub, out)


async def _follow(
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
        if ev.type == "task.hold":  # waiting for the user: say what to do, also above a table
            line = f"{stamp} {ev.workflow_id} {ev.task} {ev.payload.get('message', '')}"
            if self.live is not None:
                self.live.console.print(line, markup=False, highlight=False)
            else:
                print(line, file=self.out.err, flush=True)
            return
        if self.live is not None:
            self.live.update(self._table())
        elif ev.type == "workflow.status" or (ev.type == "task.status" and ev.status not in _QUIET):
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


if __name__ == "__main__":
    sys.exit(main())
