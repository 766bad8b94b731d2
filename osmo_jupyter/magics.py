"""`%osmo` and `%%osmo`: workflows from notebook cells.

    %osmo submit FILE [--set k=v ...] [--pool P] [--priority P] [--name N]
    %%osmo workflow [--name N] [--set k=v ...] [--pool P]     (the cell body is the YAML)
    %osmo list [--status S ...] [--count N]  |  status ID  |  logs ID --task T [-f]
    %osmo cancel ID  |  restart ID [--from TASK | --all]  |  help [COMMAND]
    %osmo done [WF/TASK]  |  retry WF/TASK       (held tasks: interactive, debug: on-failure)
    %osmo attach WF/TASK                   switch this notebook's kernel into a running task
    %%osmo task NAME [--image I] [--inputs a,b] [--resource R] [--output [URL]] [--shell]
    %%osmo task NAME --spec                                   (the cell body is the task YAML)
    %%osmo workflow-settings                                  (resources, default-values...)
    %osmo run-tasks --name WF [--set k=v] [--pool P]  |  export [WF]  |  import FILE

`$var` and `{expr}` in the line are expanded from the user's namespace by IPython (never in a
cell body, where `{{output}}` belongs to the spec). Mistakes are short `UsageError` messages
with the validator's file:line:field problems, never tracebacks.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from osmo_core.client import ApiError, Unreachable
from osmo_core.errors import InputError, OsmoError

from . import cells as cell_tasks
from .client import Client
from .workflow import Workflow

COMMANDS = (
    "submit",
    "workflow",
    "list",
    "status",
    "logs",
    "cancel",
    "restart",
    "done",
    "retry",
    "task",
    "workflow-settings",
    "run-tasks",
    "export",
    "import",
    "attach",
    "help",
)
CELL_ONLY = {"workflow", "task", "workflow-settings"}


class _HelpShown(Exception):
    """argparse printed help (`-h`): nothing more to do."""


class _Parser(argparse.ArgumentParser):
    subcommands: dict[str, argparse.ArgumentParser]

    # NoReturn in typeshed; raising UsageError never returns either
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")

    # NoReturn in typeshed; raising UsageError never returns either
    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            raise UsageError(message.strip())
        raise _HelpShown()


def _set_value(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return text


def _set_values(args: argparse.Namespace) -> dict[str, Any]:
    """`--set` typed as OSMO types it (int, float, else string), then `--set-string`."""
    from osmo_core.spec import parse_set_values  # the spec loader: ~0.2 s, not at %load_ext

    return parse_set_values(args.set_values, args.set_strings)


def build_parser() -> _Parser:
    top = _Parser(prog="%osmo", description="Run OSMO workflows from this notebook.")
    sub = top.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("submit", help="submit a workflow file; shows a live monitor")
    p.add_argument("file", help="workflow YAML file")
    submit_opts(p)
    p = sub.add_parser("workflow", help="(cell) submit the cell body as workflow YAML")
    submit_opts(p)

    p = sub.add_parser("list", help="workflows on the server, newest first")
    p.add_argument("--status", action="append", default=[], help="only this status (repeatable)")
    # --count, as `osmo workflow list` (ours and OSMO's) names it; --limit, its old name, too
    p.add_argument("--count", "--limit", type=int, default=20, help="at most N workflows")
    p = sub.add_parser("status", help="a workflow's live monitor")
    p.add_argument("id")
    p = sub.add_parser("logs", help="a task's log")
    p.add_argument("id")
    p.add_argument("--task", required=True)
    p.add_argument("--retry-id", type=int, help="attempt (default: the latest)")
    p.add_argument("-f", "--follow", action="store_true", help="follow until the attempt ends")
    p = sub.add_parser("cancel", help="cancel a workflow")
    p.add_argument("id")
    p = sub.add_parser("restart", help="a new workflow from an ended one: reruns what failed or "
                       "never ran, reuses the completed groups' outputs")  # fmt: skip
    p.add_argument("id")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--from", dest="from_task", metavar="TASK",
                       help="rerun TASK's group and everything downstream")  # fmt: skip
    which.add_argument("--all", action="store_true", help="rerun everything")
    p = sub.add_parser("done", help="an interactive task waiting for you is done: its outputs "
                       "are kept and its downstream starts")  # fmt: skip
    p.add_argument("target", nargs="*", metavar="WF/TASK",
                   help="WF/TASK or WF TASK (default: the task this kernel runs in)")  # fmt: skip
    p = sub.add_parser("retry", help="run a task held for debugging again (a new attempt)")
    p.add_argument("target", nargs="*", metavar="WF/TASK", help="WF/TASK or WF TASK")

    p = sub.add_parser("task", help="(cell) record the cell as a task of a cell workflow")
    p.add_argument("name")
    p.add_argument("--image")
    p.add_argument("--inputs", default="", help="comma-separated upstream tasks or URLs")
    p.add_argument("--resource", help="a resource name from workflow-settings")
    p.add_argument("--output", nargs="?", action="append", const=None, default=[], metavar="URL",
                   help="the task writes {{output}} (every task may); with a URL, also upload "
                   "it there")  # fmt: skip
    p.add_argument("--shell", action="store_true", help="run the body with sh, not python3")
    p.add_argument("--spec", action="store_true", help="the body is the task's YAML")
    sub.add_parser("workflow-settings", help="(cell) workflow fields besides tasks, as YAML")
    p = sub.add_parser("run-tasks", help="compose the recorded cell-tasks and submit them")
    p.add_argument("--name", required=True, help="the workflow's name")
    submit_opts(p, name=False)
    p = sub.add_parser("export", help="print the recorded cell-tasks as OSMO YAML")
    p.add_argument("name", nargs="?", default="cells")
    p = sub.add_parser("import", help="record a YAML file's tasks as cell-tasks; print the cells")
    p.add_argument("file")
    p = sub.add_parser("attach", help="switch this notebook's kernel to one inside a running task")
    p.add_argument("target", metavar="WF/TASK")
    p = sub.add_parser("help", help="help on a command")
    p.add_argument("command", nargs="?", choices=COMMANDS)
    top.subcommands = dict(sub.choices)
    return top


def submit_opts(p: argparse.ArgumentParser, *, name: bool = True) -> None:
    p.add_argument("--set", dest="set_values", type=_set_value, action="append", default=[],
                   metavar="KEY=VALUE", help="template value (repeatable)")  # fmt: skip
    p.add_argument("--set-string", dest="set_strings", type=_set_value, action="append",
                   default=[], metavar="KEY=VALUE", help="kept a string")  # fmt: skip
    p.add_argument("--pool", help="pool to run in (default: the spec's, then the server's)")
    p.add_argument("--priority", choices=["HIGH", "NORMAL", "LOW"], default="NORMAL")
    if name:
        p.add_argument("--name", help="workflow name (overrides the spec's)")


PARSER = build_parser()


@magics_class
class OsmoMagics(Magics):
    """Holds the connection and the recorded cell-tasks of one kernel."""

    def __init__(self, shell: Any = None, client: Client | None = None):
        super().__init__(shell)
        self._client = client
        self.cells = cell_tasks.CellTasks()

    @property
    def client(self) -> Client:
        if self._client is None:
            try:
                self._client = Client()
            except OsmoError as e:
                raise UsageError(f"osmo: cannot connect: {e}") from None
        return self._client

    @line_cell_magic
    def osmo(self, line: str, cell: str | None = None) -> Any:
        try:
            args = PARSER.parse_args(shlex.split(line))
        except _HelpShown:
            return None
        except ValueError as e:  # shlex: unbalanced quotes
            raise UsageError(f"%osmo: {e}") from None
        if args.cmd is None:
            print(PARSER.format_help())
            return None
        if (args.cmd in CELL_ONLY) != (cell is not None):
            form = "%%osmo (a cell magic)" if args.cmd in CELL_ONLY else "%osmo (a line magic)"
            raise UsageError(f"osmo {args.cmd} is used as {form}")
        handler: Callable[[argparse.Namespace, str | None], Any] = getattr(
            self, "_" + args.cmd.replace("-", "_")
        )
        try:
            return handler(args, cell)
        except InputError as e:
            raise UsageError(str(e)) from None
        except ApiError as e:
            raise UsageError(_api_message(e)) from None
        except (Unreachable, OsmoError, TimeoutError) as e:
            raise UsageError(str(e)) from None

    # --- workflows --------------------------------------------------------------------------

    def _submit(self, args: argparse.Namespace, cell: str | None) -> Workflow:
        return self._submit_spec(Path(args.file), args)

    def _workflow(self, args: argparse.Namespace, cell: str | None) -> Workflow:
        return self._submit_spec(cell or "", args)

    def _submit_spec(self, spec: Any, args: argparse.Namespace) -> Workflow:
        return self.client.submit(
            spec,
            set_values=_set_values(args),
            pool=args.pool,
            priority=args.priority,
            name=getattr(args, "name", None),
        )  # displayed by IPython as the live monitor (Workflow._repr_mimebundle_)

    def _list(self, args: argparse.Namespace, cell: str | None) -> Any:
        from .widgets import WorkflowList

        return WorkflowList(self.client, status=args.status or None, limit=args.count)

    def _status(self, args: argparse.Namespace, cell: str | None) -> Workflow:
        return self.client.workflow(args.id)

    def _logs(self, args: argparse.Namespace, cell: str | None) -> None:
        wf = Workflow(self.client, args.id)
        if not args.follow:
            for line in wf.logs(args.task, retry_id=args.retry_id):
                print(line)
            return
        try:
            for line in wf.logs(args.task, follow=True, retry_id=args.retry_id):
                print(line, flush=True)
        except KeyboardInterrupt:
            print("(stopped following)")

    def _cancel(self, args: argparse.Namespace, cell: str | None) -> None:
        print(f"{args.id}: {Workflow(self.client, args.id).cancel()}")

    def _restart(self, args: argparse.Namespace, cell: str | None) -> Workflow:
        return Workflow(self.client, args.id).restart(args.from_task, args.all)

    def _done(self, args: argparse.Namespace, cell: str | None) -> None:
        wf, task = _task_target(args.target, "done")
        answer = self.client.done(wf, task)
        print(f"{wf}/{task}: marked done (attempt {answer['retry_id'] + 1}); its outputs are "
              "kept and its downstream starts")  # fmt: skip

    def _retry(self, args: argparse.Namespace, cell: str | None) -> None:
        wf, task = _task_target(args.target, "retry")
        answer = self.client.retry(wf, task)
        print(f"{wf}/{task}: retrying as attempt {answer['retry_id'] + 1}")

    def _attach(self, args: argparse.Namespace, cell: str | None) -> None:
        from ._attach import spec_name, switch_session_kernel

        wf_id, sep, task = args.target.partition("/")
        if not (sep and wf_id and task):
            raise UsageError(f"%osmo attach: expected WF/TASK, got {args.target!r}")
        self.client.workflow(wf_id).task(task)  # NotFound / 403 before touching the session
        name = spec_name(wf_id, task)
        before, new = switch_session_kernel(name)
        old = before["kernel"]["name"]
        print(
            f"this notebook now runs inside {wf_id}/{task} (kernel {name}, id {new}): the next "
            f"cells see the task's files and environment; this kernel ({old}) is shut down.\n"
            f"To switch back: Kernel > Change Kernel... > {old} (a fresh kernel).",
            flush=True,
        )

    def _help(self, args: argparse.Namespace, cell: str | None) -> None:
        if args.command is None:
            print(PARSER.format_help())
            return
        print(PARSER.subcommands[args.command].format_help())

    # --- cells as tasks ---------------------------------------------------------------------

    def _task(self, args: argparse.Namespace, cell: str | None) -> None:
        body = cell or ""
        if args.spec:
            task = cell_tasks.spec_task(args.name, body)
        else:
            task = cell_tasks.script_task(
                args.name,
                body,
                image=args.image,
                inputs=[i.strip() for i in args.inputs.split(",") if i.strip()],
                resource=args.resource,
                outputs=[o for o in args.output if o],
                shell=args.shell,
            )
        self.cells.record(task, cell=self.shell.execution_count if self.shell else None)
        ups = [i.get("task") or i.get("url") for i in task.get("inputs") or []]
        print(f"recorded task {args.name}" + (f" (inputs: {', '.join(ups)})" if ups else ""))

    def _workflow_settings(self, args: argparse.Namespace, cell: str | None) -> None:
        self.cells.settings = cell_tasks.settings_from(cell or "")
        self.cells.settings_cell = self.shell.execution_count if self.shell else None
        print("recorded workflow settings")

    def _run_tasks(self, args: argparse.Namespace, cell: str | None) -> Workflow:
        doc = cell_tasks.to_yaml(self.cells.compose(args.name))
        try:
            wf = self.client.submit(
                doc, set_values=_set_values(args), pool=args.pool, priority=args.priority
            )
        except InputError as e:  # located in the cells, not in the YAML they were made into
            raise self.cells.locate(e, doc) from None
        wf.sources = self.cells.sources()
        return wf

    def _export(self, args: argparse.Namespace, cell: str | None) -> None:
        print(cell_tasks.to_yaml(self.cells.compose(args.name)), end="")

    def _import(self, args: argparse.Namespace, cell: str | None) -> None:
        try:
            text = Path(args.file).expanduser().read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot read {args.file}: {e.strerror}") from None
        sources = cell_tasks.cells_from_yaml(text)
        for source in sources:  # the same cells, run: the tasks are recorded now
            first, _, body = source.partition("\n")
            self.osmo(first.removeprefix("%%osmo "), body)
        print("\n# ---- cells ----\n" + "\n# ----\n".join(sources), end="")


def _task_target(words: list[str], cmd: str) -> tuple[str, str]:
    """WF/TASK, WF TASK, or (nothing) the task whose environment this kernel runs in."""
    if len(words) == 1 and words[0].count("/") == 1:
        wf, _, task = words[0].partition("/")
    elif len(words) == 2:
        wf, task = words
    elif not words and os.environ.get("OSMO_WORKFLOW_ID") and os.environ.get("OSMO_TASK_NAME"):
        wf, task = os.environ["OSMO_WORKFLOW_ID"], os.environ["OSMO_TASK_NAME"]
    else:
        inside = " (or run it in a kernel inside the task)" if cmd == "done" else ""
        raise UsageError(f"%osmo {cmd}: name the task as WF/TASK or WF TASK{inside}")
    if not wf or not task:
        raise UsageError(f"%osmo {cmd}: name the task as WF/TASK or WF TASK")
    return wf, task


def _api_message(e: ApiError) -> str:
    if e.status in (401, 403):
        return f"the server refused the token (HTTP {e.status})"
    lines = [e.message]
    lines += [f"  {d.get('field', '')}: {d.get('message', '')}" for d in e.details]
    return "\n".join(lines)


# `%osmo?` shows the commands, as `%osmo help` does.
OsmoMagics.osmo.__doc__ = (__doc__ or "") + "\n" + PARSER.format_help()
