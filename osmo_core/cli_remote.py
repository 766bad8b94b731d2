"""The `osmo` commands that talk to a control-plane server: `login`, `logout` and
`workflow submit | query | list | logs | cancel | spec`.

`osmo login URL --token TOKEN` checks the token (`GET version`) and keeps URL and token in
`$XDG_CONFIG_HOME/osmo/credentials.json` (0600). Exit codes are the local CLI's: 2 invalid input
(a 422 from the server, located like the local validator's, or no login), 3 placement, 4 not
found / conflict, 1 anything else (refused token, unreachable server, failed workflow).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from .cli_common import (
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_PLACEMENT,
    Output,
    add_format,
    add_set_values,
    report,
)
from .client import ApiError, Client, Credentials, NotLoggedIn, Unreachable
from .config import PRIORITIES
from .errors import InputError, PlacementError, Problem, SpecError
from .states import WorkflowStatus

REMOTE_WORKFLOW_COMMANDS = ("submit", "query", "list", "logs", "cancel", "spec")
POLL_INTERVAL = 0.2
_QUIET = {"PROCESSING", "INITIALIZING"}


def is_remote(args: argparse.Namespace) -> bool:
    if args.group in ("login", "logout"):
        return True
    return args.group == "workflow" and getattr(args, "cmd", None) in REMOTE_WORKFLOW_COMMANDS


def add_remote_parsers(top: Any, workflow: Any) -> None:
    """`login`/`logout` under `top`; the server-backed workflow commands under `workflow`."""

    li = top.add_parser("login", help="keep a server's URL and token for the remote commands")
    li.add_argument("url", help="the server, e.g. http://host:8888")
    li.add_argument("--token", required=True, help="an API token the server accepts")
    top.add_parser("logout", help="forget the stored server and token")

    s = workflow.add_parser("submit", help="submit a workflow to the server; prints its id")
    s.add_argument("file", help="workflow YAML file ('-' for stdin)")
    add_set_values(s)
    s.add_argument("--pool", help="pool to run in (default: the spec's, then the server's)")
    s.add_argument("--priority", choices=list(PRIORITIES), default="NORMAL")
    s.add_argument("--wait", action="store_true", help="follow it to the end; exit 0/1 like run")
    add_format(s)

    q = workflow.add_parser("query", help="a workflow's status and tasks")
    q.add_argument("id")
    add_format(q)

    ls = workflow.add_parser("list", help="workflows on the server, newest first")
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
    ls.add_argument("--count", type=int, default=20, help="at most N workflows (default 20)")
    ls.add_argument("--offset", type=int, default=0)
    add_format(ls)

    lg = workflow.add_parser("logs", help="a task's output")
    lg.add_argument("id")
    lg.add_argument("--task", required=True)
    lg.add_argument("--retry-id", type=int, help="attempt (default: the latest)")
    lg.add_argument("-n", dest="lines", type=int, help="only the last N lines")
    add_format(lg)

    c = workflow.add_parser("cancel", help="cancel workflows")
    c.add_argument("ids", nargs="+", metavar="ID")
    add_format(c)

    sp = workflow.add_parser("spec", help="a workflow's spec as submitted")
    sp.add_argument("id")
    sp.add_argument("--rendered", action="store_true", help="the spec after templating")
    add_format(sp)


async def run_remote(args: argparse.Namespace, out: Output) -> int:
    file = getattr(args, "file", None)
    try:
        if args.group == "login":
            return _login(args, out)
        if args.group == "logout":
            removed = Credentials.remove()
            out.info("logged out" if removed else "not logged in")
            return EXIT_OK
        client = Client.from_credentials()
        handler = {
            "submit": _submit,
            "query": _query,
            "list": _list,
            "logs": _logs,
            "cancel": _cancel,
            "spec": _spec,
        }[args.cmd]
        return await handler(client, args, out)
    except NotLoggedIn as e:
        out.error(str(e))
        return EXIT_INVALID
    except InputError as e:
        return report(e, out)
    except Unreachable as e:
        out.error(str(e))
        return EXIT_FAILED
    except ApiError as e:
        return _api_failure(e, out, file)


def _api_failure(e: ApiError, out: Output, file: str | None) -> int:
    if e.status == 401:
        out.error(f"the server refused the token: {e.message}; run osmo login again")
        return EXIT_FAILED
    if e.status == 403:
        out.error(f"not allowed: {e.message}")
        return EXIT_FAILED
    if e.status in (400, 422):
        err = _input_error(e, file)
        out.problems(err)
        return EXIT_PLACEMENT if isinstance(err, PlacementError) else EXIT_INVALID
    if e.status in (404, 409):
        out.error(e.message)
        return EXIT_CONFLICT
    out.error(f"server error (HTTP {e.status}): {e.message}")
    return EXIT_FAILED


def _input_error(e: ApiError, file: str | None) -> InputError:
    """The server's details as the local validator's problems (located in the local file)."""
    problems = []
    for d in e.details:
        line, where = d.get("line"), d.get("file")
        if file and line is not None and where in (None, "<spec>"):
            where = file  # the server saw the text only; the user knows it by this name
        problems.append(
            Problem(
                message=str(d.get("message", "")),
                field=str(d.get("field") or ""),
                file=where,
                line=line,
                column=d.get("column"),
                hint=d.get("hint"),
            )
        )
    if not problems:
        problems = [Problem(e.message)]
    cls = {"placement": PlacementError, "invalid spec": SpecError}.get(e.reason or "", InputError)
    return cls(problems)


def _login(args: argparse.Namespace, out: Output) -> int:
    client = Client(args.url, args.token)
    version = client.get("version")
    path = Credentials(client.url, args.token).save()
    out.info(f"credentials saved in {path}")
    server = version.get("version", "?") if isinstance(version, dict) else "?"
    out.result(
        {"url": client.url, "version": server},
        f"logged in to {client.url} (osmo {server})",
    )
    return EXIT_OK


# --- workflow commands -----------------------------------------------------------------------


def _read(file: str) -> tuple[str, str]:
    if file == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        with open(file, encoding="utf-8") as f:
            return f.read(), file
    except OSError as e:
        raise InputError(f"cannot read {file}: {e.strerror}") from None


async def _submit(client: Client, args: argparse.Namespace, out: Output) -> int:
    from .spec import parse_set_values  # here: spec's import order starts at .config

    text, name = _read(args.file)
    args.file = name
    body: dict[str, Any] = {
        "spec": text,
        "set_values": parse_set_values(args.set_values),
        "priority": args.priority,
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
    wf = await _wait(client, wf_id, out)
    out.summary(wf)
    return EXIT_OK if wf["status"] == WorkflowStatus.COMPLETED.value else EXIT_FAILED


async def _wait(client: Client, wf_id: str, out: Output) -> dict[str, Any]:
    """Poll until the workflow ends, printing each task's status changes on stderr."""
    seen: dict[tuple[str, int], str] = {}
    last_status = ""
    while True:
        wf: dict[str, Any] = client.get(f"workflows/{wf_id}")
        if not out.json:
            stamp = datetime.now().strftime("%H:%M:%S")
            for t in wf["tasks"]:
                key = (t["name"], t["retry_id"])
                if seen.get(key) != t["status"]:
                    seen[key] = t["status"]
                    if t["status"] not in _QUIET:
                        code = "" if t["exit_code"] is None else f" exit {t['exit_code']}"
                        out.info(f"{stamp} {wf_id} {t['name']} {t['status']}{code}")
            if wf["status"] != last_status:
                last_status = wf["status"]
                out.info(f"{stamp} {wf_id} workflow {last_status}")
        if WorkflowStatus(wf["status"]).terminal:
            return wf
        await asyncio.sleep(POLL_INTERVAL)


async def _query(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.summary(client.get(f"workflows/{args.id}"))
    return EXIT_OK


async def _list(client: Client, args: argparse.Namespace, out: Output) -> int:
    rows: list[dict[str, Any]] = client.get(
        "workflows",
        status=",".join(args.status) or None,
        user=args.user,
        pool=args.pool,
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
    lines: list[dict[str, Any]] = client.get(
        f"workflows/{args.id}/tasks/{args.task}/logs", retry_id=args.retry_id
    )
    if args.lines is not None:
        lines = lines[-args.lines :] if args.lines > 0 else []
    if out.json:
        out.result(lines, "")
    else:
        for ln in lines:
            print(ln["text"])
    return EXIT_OK


async def _cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    code = EXIT_OK
    results = []
    for wf_id in args.ids:
        try:
            res = client.post(f"workflows/{wf_id}/cancel")
        except ApiError as e:
            if e.status in (401, 403):
                raise
            code = max(code, _api_failure(e, out, None))
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
