"""`osmo workflow submit | query | list | logs | cancel | restart | spec | done | retry`: the
workflow commands that talk to the logged-in server (connect.py maps its answers to exit codes).

Live output (`submit --wait`, `logs -f`) comes from the server's WebSockets, not polling; a
dropped events connection is resumed from the last event id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config import PRIORITIES
from ...states import WorkflowStatus
from ..common import (
    EXIT_FAILED,
    EXIT_OK,
    Output,
    add_format,
    add_set_values,
    add_submit_options,
    read_spec,
)
from ..connect import api_failure, with_client
from .live import QUIET

if TYPE_CHECKING:
    from ...client import Client

LOG_PAGE = 1000  # log lines per request: the server's default page size
RECONNECTS = 5  # an events stream that drops is resumed this many times, then given up


def register(cmds: Any) -> None:
    """Add the server-backed workflow commands to the `workflow` group's subcommands."""
    s = cmds.add_parser("submit", help="submit a workflow to the server; prints its id")
    s.add_argument("file", help="workflow YAML file ('-' for stdin)")
    add_set_values(s)
    add_submit_options(s)
    s.add_argument("--pool", help="pool to run in (default: the spec's, then the server's)")
    s.add_argument("--priority", choices=list(PRIORITIES), default="NORMAL")
    s.add_argument("--wait", action="store_true", help="follow it to the end; exit 0/1 like run")
    s.add_argument(
        "--timeout", type=float, help="with --wait: give up waiting after SECONDS (exit 1)"
    )
    add_format(s)
    s.set_defaults(run=with_client(_submit))

    q = cmds.add_parser("query", help="a workflow's status and tasks")
    q.add_argument("id")
    add_format(q)
    q.set_defaults(run=with_client(_query))

    ls = cmds.add_parser("list", help="workflows on the server, newest first")
    ls.add_argument(
        "--status",
        nargs="+",
        action="extend",
        default=[],
        choices=[s.value for s in WorkflowStatus],
        metavar="STATUS",
        help="only these statuses (repeatable)",
    )
    ls.add_argument("--user")
    ls.add_argument("--pool")
    ls.add_argument(
        "--label",
        dest="labels",
        action="append",
        default=[],
        metavar="KEY=SELECTOR",
        help="only workflows whose label KEY matches: a value, with * wildcards and (a|b) "
        "alternatives (repeatable: all must match)",
    )
    ls.add_argument("--count", type=int, default=20, help="at most N workflows (default 20)")
    ls.add_argument("--offset", type=int, default=0)
    add_format(ls)
    ls.set_defaults(run=with_client(_list))

    lg = cmds.add_parser("logs", help="a task's output")
    lg.add_argument("id")
    lg.add_argument("--task", required=True)
    lg.add_argument("--retry-id", type=int, help="attempt (default: the latest)")
    lg.add_argument("-n", dest="lines", type=int, help="only the last N lines")
    lg.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until the task ends"
    )
    add_format(lg)
    lg.set_defaults(run=with_client(_logs))

    c = cmds.add_parser("cancel", help="cancel workflows")
    c.add_argument("ids", nargs="+", metavar="ID")
    add_format(c)
    c.set_defaults(run=with_client(_cancel))

    rs = cmds.add_parser(
        "restart",
        help="a new workflow from an ended one: reruns what failed or never ran, reuses the "
        "completed groups' outputs; prints the new id",
    )
    rs.add_argument("id")
    which = rs.add_mutually_exclusive_group()
    which.add_argument(
        "--from", dest="from_task", metavar="TASK", help="rerun TASK's group and all downstream"
    )
    which.add_argument("--all", action="store_true", help="rerun everything (reuse nothing)")
    add_format(rs)
    rs.set_defaults(run=with_client(_restart))

    dn = cmds.add_parser(
        "done", help="an interactive task waiting for you is done: outputs kept, downstream starts"
    )
    rt = cmds.add_parser("retry", help="run a task held for debugging again (a new attempt)")
    for p in (dn, rt):
        p.add_argument("id")
        p.add_argument("task")
        add_format(p)
        p.set_defaults(run=with_client(_hold_decision))

    sp = cmds.add_parser("spec", help="a workflow's spec as submitted")
    sp.add_argument("id")
    sp.add_argument("--rendered", action="store_true", help="the spec after templating")
    add_format(sp)
    sp.set_defaults(run=with_client(_spec))


async def _submit(client: Client, args: argparse.Namespace, out: Output) -> int:
    # here: spec's import order starts at .config
    from ...spec import parse_assignments, parse_set_values
    from ...spec.localfiles import inline_localpaths

    text, name = read_spec(args.file)
    args.file = name
    # The server reads no file for its caller: `localpath` files (relative to the spec's
    # folder) are read here and sent inline.
    folder = Path(name).parent if name != "<stdin>" else Path.cwd()
    spec, set_values = inline_localpaths(
        text, base=folder, file=name, set_values=parse_set_values(args.set_values, args.set_strings)
    )
    body: dict[str, Any] = {
        "spec": spec,
        "set_values": set_values or {},
        "priority": args.priority,
        "env": parse_assignments(args.set_env, "--set-env"),
        "labels": parse_assignments(args.labels, "--label"),
    }
    if args.pool:
        body["pool"] = args.pool
    wf_id = client.post("workflows", body)["id"]
    if not args.wait:
        out.result({"id": wf_id}, wf_id)
        return EXIT_OK
    out.info(f"submitted {wf_id}")
    if not out.json:
        print(wf_id, flush=True)
    try:
        wf = await _wait(client, wf_id, out, args.timeout)
    except WaitTimeout as e:
        out.error(str(e))
        return EXIT_FAILED
    out.summary(wf)
    return EXIT_OK if wf["status"] == WorkflowStatus.COMPLETED.value else EXIT_FAILED


async def _wait(
    client: Client, wf_id: str, out: Output, timeout: float | None = None
) -> dict[str, Any]:
    """Follow the workflow's events until it ends, printing status changes on stderr."""
    try:
        return await asyncio.wait_for(_follow_events(client, wf_id, out), timeout)
    except asyncio.TimeoutError:
        wf: dict[str, Any] = client.get(f"workflows/{wf_id}")
        raise WaitTimeout(
            f"{wf_id} is still {wf['status']} after {timeout:g}s; it goes on running "
            f"(`osmo workflow query {wf_id}`)"
        ) from None


class WaitTimeout(Exception):
    pass


async def _follow_events(client: Client, wf_id: str, out: Output) -> dict[str, Any]:
    from ...client import Unreachable

    last = 0
    for attempt in range(RECONNECTS + 1):
        try:
            async for ev in client.stream("events", workflow_id=wf_id, after=last, logs="false"):
                if ev.get("type") == "resync":
                    continue  # the stored events it missed are replayed next
                last = ev["id"] or last
                show_event(ev, out)
                if ev["type"] == "workflow.status" and WorkflowStatus(ev["status"]).terminal:
                    # the server's answer is JSON (Any)
                    return client.get(f"workflows/{wf_id}")  # type: ignore[no-any-return]
        except Unreachable:
            if attempt == RECONNECTS:
                raise
        out.info(f"the server closed the event stream; reconnecting after event {last}")
        await asyncio.sleep(min(2**attempt * 0.2, 5))
    raise Unreachable(client.url, f"the event stream kept dropping ({RECONNECTS} reconnects)")


def show_event(ev: dict[str, Any], out: Output) -> None:
    if out.json:
        return
    stamp = datetime.fromtimestamp(ev["ts"]).strftime("%H:%M:%S")
    if ev["type"] == "task.status" and ev["status"] not in QUIET:
        code = ev["payload"].get("exit_code")
        extra = "" if code is None else f" exit {code}"
        retry = f" (retry {ev['retry_id']})" if ev["retry_id"] else ""
        out.info(f"{stamp} {ev['workflow_id']} {ev['task']} {ev['status']}{extra}{retry}")
    elif ev["type"] == "workflow.status":
        out.info(f"{stamp} {ev['workflow_id']} workflow {ev['status']}")
    elif ev["type"] in ("task.hold", "task.storage"):
        out.info(f"{stamp} {ev['workflow_id']} {ev['task']} {ev['payload'].get('message', '')}")
    elif ev["type"] == "task.pending" and ev["payload"].get("reason"):
        out.info(f"{stamp} {ev['workflow_id']} {ev['task']} waiting: {ev['payload']['reason']}")


async def _query(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.summary(client.get(f"workflows/{args.id}"))
    return EXIT_OK


async def _list(client: Client, args: argparse.Namespace, out: Output) -> int:
    from ...spec.labels import parse_selector

    for selector in args.labels:  # a clear error here, as OSMO's CLI gives
        parse_selector(selector)
    rows: list[dict[str, Any]] = client.get(
        "workflows",
        status=",".join(args.status) or None,
        user=args.user,
        pool=args.pool,
        label=args.labels,
        limit=args.count,
        offset=args.offset,
    )
    if out.json:
        out.result(rows, "")
        return EXIT_OK
    if not rows:
        out.info("no workflows")
        return EXIT_OK
    width = max(len(r["id"]) for r in rows)
    print(f"{'ID':<{width}}  {'STATUS':<20} {'USER':<12} {'POOL':<10} SUBMITTED")
    for r in rows:
        when = datetime.fromtimestamp(r["submit_time"]).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{r['id']:<{width}}  {r['status']:<20} {r['user']:<12} {r['pool']:<10} {when}")
    return EXIT_OK


async def _logs(client: Client, args: argparse.Namespace, out: Output) -> int:
    if args.follow:
        return await _follow_logs(client, args, out)
    lines = _log_lines(client, args)
    if args.lines is not None:
        lines = lines[-args.lines :] if args.lines > 0 else []
    if out.json:
        out.result(lines, "")
    else:
        for ln in lines:
            print(ln["text"])
    return EXIT_OK


def _log_lines(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The whole log, a page at a time (the server answers pages of at most its page size)."""
    lines: list[dict[str, Any]] = []
    while True:
        page: list[dict[str, Any]] = client.get(
            f"workflows/{args.id}/tasks/{args.task}/logs",
            retry_id=args.retry_id,
            start=len(lines),
            limit=LOG_PAGE,
        )
        lines += page
        if len(page) < LOG_PAGE:
            return lines


async def _follow_logs(client: Client, args: argparse.Namespace, out: Output) -> int:
    from ...client import follow_log, log_lines_of  # here: parsing imports no client code

    start = 0
    if args.lines is not None:  # `-n N -f`: the last N lines so far, then new ones
        start = max(0, len(_log_lines(client, args)) - max(args.lines, 0))
    path = f"workflows/{args.id}/tasks/{args.task}/logs/follow"
    status = None
    params = {"retry_id": args.retry_id, "start": start}
    async for msg in follow_log(lambda p: client.stream(path, **p), params):
        if lines := log_lines_of(msg):  # one write per batch, as JSON lines or text
            shown = (json.dumps({"type": "log", **ln}) if out.json else ln["text"] for ln in lines)
            print("\n".join(shown), flush=True)
        elif msg["type"] == "attempt":
            out.info(f"--- attempt {msg['retry_id']} ---")
        elif msg["type"] == "end":
            status = msg["status"]
            out.info(f"--- {args.task} {status} ---")
    if status is None:
        out.error("the server closed the log stream before the task ended")
        return EXIT_FAILED
    return EXIT_OK


async def _restart(client: Client, args: argparse.Namespace, out: Output) -> int:
    res = client.post(
        f"workflows/{args.id}/restart", {"from_task": args.from_task, "all": args.all}
    )
    reused = f"; reused: {', '.join(res['reused'])}" if res["reused"] else ""
    out.info(f"restarted {args.id} as {res['id']}{reused}")
    out.result(res, res["id"])
    return EXIT_OK


async def _hold_decision(client: Client, args: argparse.Namespace, out: Output) -> int:
    """`done` / `retry` of a held task."""
    res = client.post(f"workflows/{args.id}/tasks/{args.task}/{args.cmd}")
    if args.cmd == "done":
        text = f"{args.id} {args.task}: marked done; its outputs are kept, its downstream starts"
    else:
        text = f"{args.id} {args.task}: retrying (retry {res['retry_id']})"
    out.result(res, text)
    return EXIT_OK


async def _cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    from ...client import ApiError

    code = EXIT_OK
    results = []
    for wf_id in args.ids:
        try:
            res = client.post(f"workflows/{wf_id}/cancel")
        except ApiError as e:
            if e.status in (401, 403):
                raise
            code = max(code, api_failure(e, out, None))
            continue
        results.append(res)
        if not out.json:
            print(f"{res['id']}: {res['status']}")
    if out.json:
        print(json.dumps(results))
    return code


async def _spec(client: Client, args: argparse.Namespace, out: Output) -> int:
    spec: dict[str, str] = client.get(f"workflows/{args.id}/spec")
    out.result(spec, spec["rendered" if args.rendered else "original"].rstrip("\n"))
    return EXIT_OK
