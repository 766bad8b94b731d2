"""`osmo workflow validate | run | resume`: workflows run here, on the embedded default (this
process runs the engine). `validate` checks a spec and its placement; `run` submits it and
follows it to the end (live.py); `resume` reloads unfinished workflows and follows them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config import PRIORITIES
from ..common import (
    EXIT_OK,
    Output,
    add_format,
    add_set_values,
    add_submit_options,
    read_spec,
    with_admission,
    with_service,
)

if TYPE_CHECKING:
    from ...admission import Admission
    from ...service import Service
    from ...spec import LoadedSpec


def register(cmds: Any) -> None:
    """Add `validate`, `run` and `resume` to the `workflow` group's subcommands."""

    def spec_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("file", help="workflow YAML file ('-' for stdin)")
        add_set_values(sp)
        add_submit_options(sp)
        sp.add_argument(
            "--pool",
            help="pool to place the workflow in (default: the spec's or the configured default)",
        )
        add_format(sp)

    v = cmds.add_parser("validate", help="check a spec and its placement; exit 2/3 on problems")
    spec_args(v)
    v.set_defaults(run=with_admission(_validate))

    r = cmds.add_parser("run", help="run a workflow here, showing live status; exit 0/1")
    spec_args(r)
    r.add_argument("--dry-run", action="store_true", help="print the rendered spec and stop")
    r.add_argument("--priority", choices=list(PRIORITIES), default="NORMAL")
    r.add_argument("--logs", action="store_true", help="stream task output to the terminal")
    r.set_defaults(run=with_service(_run))

    rs = cmds.add_parser(
        "resume",
        help="reload unfinished workflows (after a crash or an "
        "interrupted run) and follow them to the end",
    )
    rs.add_argument("ids", nargs="*", help="workflow ids to follow (default: all unfinished)")
    add_format(rs)
    rs.add_argument("--logs", action="store_true", help="stream task output to the terminal")
    rs.set_defaults(run=with_service(_resume))


def _load(admission: Admission, args: argparse.Namespace, out: Output) -> LoadedSpec:
    from ...spec import parse_assignments, parse_set_values
    from ...spec.localfiles import inline_localpaths

    text, name = read_spec(args.file)
    # The CLI is the client here: it reads `localpath` files (relative to the spec's folder)
    # and hands them to the engine inline, as `osmo workflow submit` sends them to a server.
    folder = Path(name).parent if args.file != "-" else Path.cwd()
    source, set_values = inline_localpaths(
        text, base=folder, file=name, set_values=parse_set_values(args.set_values, args.set_strings)
    )
    loaded = admission.load(
        source,
        file=name,
        set_values=set_values,
        env=parse_assignments(args.set_env, "--set-env"),
        labels=parse_assignments(args.labels, "--label"),
    )
    for warning in loaded.warnings:
        out.info(f"warning: {warning}")
    return loaded


async def _validate(admission: Admission, args: argparse.Namespace, out: Output) -> int:
    loaded = _load(admission, args, out)
    # after the spec's own errors: listing may dial SSH hosts
    images = any(t.image for t in loaded.workflow.all_tasks())
    await admission.load_capacity(runtimes=images)
    pool = admission.check_placement(loaded, args.pool)
    out.result(
        {
            "valid": True,
            "workflow": loaded.workflow.name,
            "pool": pool,
            "tasks": len(loaded.workflow.all_tasks()),
        },
        f"{loaded.file or '<spec>'}: valid ({len(loaded.workflow.all_tasks())} tasks, pool {pool})",
    )
    return EXIT_OK


async def _run(service: Service, args: argparse.Namespace, out: Output) -> int:
    from .live import follow

    loaded = _load(service.admission, args, out)
    if args.dry_run:
        print(
            loaded.rendered
            if args.format == "text"
            else json.dumps(loaded.spec.model_dump(mode="json", by_alias=True))
        )
        return EXIT_OK
    async with service:
        sub = service.subscribe(logs=args.logs)
        # A Ctrl-C while submitting (the task may already be launched) is counted, and follow
        # acts on it; without this it interrupted the run and left the tasks running.
        loop = asyncio.get_running_loop()
        early: list[None] = []
        loop.add_signal_handler(signal.SIGINT, early.append, None)
        try:
            wf_id = await service.submit(loaded, pool=args.pool, priority=args.priority)
        except BaseException:
            loop.remove_signal_handler(signal.SIGINT)
            raise
        out.info(f"submitted {wf_id} ({len(loaded.workflow.all_tasks())} tasks)")
        return await follow(service, [wf_id], sub, out, early_interrupts=len(early))


async def _resume(service: Service, args: argparse.Namespace, out: Output) -> int:
    from .live import follow

    async with service:
        sub = service.subscribe(logs=args.logs)
        ids = args.ids or service.unfinished()
        if not ids:
            out.info("nothing to resume: no unfinished workflow")
            sub.close()
            return EXIT_OK
        out.info(f"following {', '.join(ids)}")
        return await follow(service, ids, sub, out)
