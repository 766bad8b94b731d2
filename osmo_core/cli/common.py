"""What every `osmo` command shares: exit codes, the Output (text for people, JSON for
scripts), the common options, the one mapping from osmo_core's errors to exit codes, and how a
command that runs here gets its Service (imported only then: start-up time is a feature).

Exit codes: 0 done (the workflow COMPLETED), 1 failed, 2 invalid input, 3 a valid spec the pool
cannot run, 4 not found / conflict (another engine on this data directory, the workflow already
ended), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import Conflict, InputError, NotFound, OsmoError, PlacementError

if TYPE_CHECKING:
    from ..admission import Admission
    from ..service import Service

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_PLACEMENT, EXIT_CONFLICT = 0, 1, 2, 3, 4

# What a command's parser holds as `run` (set_defaults): the command, given its arguments.
Run = Callable[[argparse.Namespace, "Output"], Awaitable[int]]


def add_format(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--format", choices=["text", "json"], default="text")


def add_set_values(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--set",
        dest="set_values",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override default-values (repeatable); a number is an int or a float, as in OSMO",
    )
    sp.add_argument(
        "--set-string",
        dest="set_strings",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override default-values with strings, kept as typed (repeatable)",
    )


def add_submit_options(sp: argparse.ArgumentParser) -> None:
    """OSMO's `--set-env` and `--label` of `osmo workflow submit`."""
    sp.add_argument(
        "--set-env",
        dest="set_env",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for every task, over the spec's (repeatable)",
    )
    sp.add_argument(
        "--label",
        dest="labels",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a workflow label, over the spec's (repeatable)",
    )


def name_subcommands(subparsers: Any) -> None:
    """Name the subcommands registered so far in usage and errors: `{a,b,c}`, not `cmd`."""
    subparsers.metavar = "{" + ",".join(subparsers.choices) + "}"


def read_spec(file: str) -> tuple[str, str]:
    """A spec's text and the name to report it by; `-` is stdin."""
    if file == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        with open(file, encoding="utf-8") as f:
            return f.read(), file
    except OSError as e:
        raise InputError(f"cannot read {file}: {e.strerror}") from None


def with_service(command: Callable[[Service, argparse.Namespace, Output], Awaitable[int]]) -> Run:
    """A command that runs here, on the embedded default: the Service built from the config
    (--config), osmo_core's errors reported as exit codes."""

    async def run(args: argparse.Namespace, out: Output) -> int:
        from ..config import load_config
        from ..service import Service

        try:
            return await command(Service(load_config(args.config)), args, out)
        except OsmoError as e:
            return report(e, out)

    return run


def with_admission(
    command: Callable[[Admission, argparse.Namespace, Output], Awaitable[int]],
) -> Run:
    """A command that only checks specs: the config's pools, scheduler and backends, without
    the store or the engine (nor their imports: validate starts fast)."""

    async def run(args: argparse.Namespace, out: Output) -> int:
        from ..admission import Admission
        from ..config import load_config

        try:
            return await command(Admission(load_config(args.config)), args, out)
        except OsmoError as e:
            return report(e, out)

    return run


def report(e: OsmoError, out: Output) -> int:
    """Tell the user what went wrong; the exit code for it."""
    if isinstance(e, InputError):
        out.problems(e)
        return EXIT_PLACEMENT if isinstance(e, PlacementError) else EXIT_INVALID
    if isinstance(e, Conflict | NotFound):
        out.error(str(e))
        return EXIT_CONFLICT
    out.error(f"{type(e).__name__}: {e}")
    return EXIT_FAILED


class Output:
    """Text for people, JSON for scripts: results on stdout, progress and errors on stderr."""

    def __init__(self, fmt: str, stream: TextIO | None = None):
        self.json = fmt == "json"
        self.err = stream or sys.stderr

    def info(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def error(self, text: str) -> None:
        if self.json:
            print(json.dumps({"error": text}))
        else:
            print(f"error: {text}", file=self.err)

    def result(self, data: Any, text: str) -> None:
        print(json.dumps(data, default=str) if self.json else text, flush=True)

    def problems(self, e: InputError) -> None:
        if self.json:
            print(json.dumps({"error": e.kind, "details": [p.to_dict() for p in e.problems]}))
            return
        print(f"{e.kind}:", file=self.err)
        for p in e.problems:
            print(f"  {p}", file=self.err)
        if e.left_out:
            print(f"  {e.left_out}", file=self.err)

    def summary(self, wf: dict[str, Any]) -> None:
        if self.json:
            print(json.dumps(wf, default=str))
            return
        latest: dict[str, dict[str, Any]] = {}
        for t in wf["tasks"]:
            latest[t["name"]] = t
        dur = _duration(wf["start_time"], wf["end_time"])
        print(f"{wf['id']}: {wf['status']}" + (f" in {dur}" if dur else ""))
        width = max((len(n) for n in latest), default=4)
        for name, t in latest.items():
            code = "" if t["exit_code"] is None else f"exit {t['exit_code']}"
            retry = f" (attempt {t['retry_id'] + 1})" if t["retry_id"] else ""
            msg = f"  {t['message']}" if t["message"] and t["status"] != "COMPLETED" else ""
            if t.get("pending_reason"):  # why it waits (a server without it: no key)
                msg = f"  waiting: {t['pending_reason']}"
            if t.get("reused_from"):  # it did not run: a restart or the task cache reused it
                msg = f"  reused from {t['reused_from']}"
            print(
                f"  {name:<{width}}  {t['status']:<20} {code:<8}"
                f"{_duration(t['start_time'], t['end_time']):>8}{retry}{msg}"
            )


def _duration(start: float | None, end: float | None) -> str:
    if not start:
        return ""
    secs = (end or time.time()) - start
    if secs < 10:
        return f"{secs:.2f}s"
    return f"{secs:.1f}s" if secs < 120 else f"{int(secs // 60)}m{int(secs % 60):02d}s"
