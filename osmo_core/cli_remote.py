"""The `osmo` commands that talk to a control-plane server: `login`, `logout`, `version`,
`token create | list | revoke`, `workflow submit | query | list | logs | cancel | restart | spec
| done | retry`,
and — when logged in — `pool list` and `resource list` (otherwise those describe the embedded
default).

Live output (`submit --wait`, `logs -f`) comes from the server's WebSockets, not polling; a
dropped events connection is resumed from the last event id.

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
from pathlib import Path
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
    print_pools,
    print_resources,
    report,
)
from .cli_interactive import add_interactive_parsers, exec_command, port_forward_command
from .cli_kernel import add_kernel_parser, kernel_command
from .cli_rsync import rsync_command
from .client import ApiError, Client, Credentials, NotLoggedIn, Unreachable
from .config import PRIORITIES
from .errors import InputError, PlacementError, Problem, SpecError
from .states import WorkflowStatus

LOG_PAGE = 1000  # log lines per request: the server's default page size
REMOTE_WORKFLOW_COMMANDS = ("submit", "query", "list", "logs", "cancel", "restart", "spec")
REMOTE_WORKFLOW_COMMANDS += ("done", "retry")  # held tasks (interactive, debug: on-failure)
REMOTE_WORKFLOW_COMMANDS += ("exec", "port-forward", "rsync")  # cli_interactive.py
REMOTE_WORKFLOW_COMMANDS += ("kernel",)  # cli_kernel.py
RECONNECTS = 5  # an events stream that drops is resumed this many times, then given up
_QUIET = {"PROCESSING", "INITIALIZING"}


def is_remote(args: argparse.Namespace) -> bool:
    if args.group in ("login", "logout", "token", "version"):
        return True
    if args.group in ("pool", "resource"):
        return Credentials.load() is not None
    return args.group == "workflow" and getattr(args, "cmd", None) in REMOTE_WORKFLOW_COMMANDS


def add_remote_parsers(top: Any, workflow: Any) -> None:
    """`login`/`logout` under `top`; the server-backed workflow commands under `workflow`."""

    li = top.add_parser("login", help="keep a server's URL and token for the remote commands")
    li.add_argument("url", help="the server, e.g. http://host:8888")
    li.add_argument("--token", required=True, help="an API token the server accepts")
    top.add_parser("logout", help="forget the stored server and token")
    v = top.add_parser("version", help="this CLI's version, and the server's when logged in")
    add_format(v)

    tok = top.add_parser("token", help="personal access tokens on the server")
    tcmds = tok.add_subparsers(dest="cmd", required=True, metavar="{create,list,revoke}")
    tc = tcmds.add_parser("create", help="a new token (printed once)")
    tc.add_argument("name", help="what it is for")
    tc.add_argument("--user", help="admins: for this user")
    tc.add_argument("--role", choices=["user", "admin"], default="user", help="admins: admin")
    tc.add_argument("--expires-in-days", type=float, help="lifetime (default: until revoked)")
    add_format(tc)
    tl = tcmds.add_parser("list", help="your tokens (admins: everyone's)")
    tl.add_argument("--user", help="admins: one user's")
    add_format(tl)
    tr = tcmds.add_parser("revoke", help="revoke tokens by id")
    tr.add_argument("ids", nargs="+", metavar="ID")
    add_format(tr)

    s = workflow.add_parser("submit", help="submit a workflow to the server; prints its id")
    s.add_argument("file", help="workflow YAML file ('-' for stdin)")
    add_set_values(s)
    s.add_argument("--pool", help="pool to run in (default: the spec's, then the server's)")
    s.add_argument("--priority", choices=list(PRIORITIES), default="NORMAL")
    s.add_argument("--wait", action="store_true", help="follow it to the end; exit 0/1 like run")
    s.add_argument(
        "--timeout", type=float, help="with --wait: give up waiting after SECONDS (exit 1)"
    )
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
    lg.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until the task ends"
    )
    add_format(lg)

    c = workflow.add_parser("cancel", help="cancel workflows")
    c.add_argument("ids", nargs="+", metavar="ID")
    add_format(c)

    rs = workflow.add_parser("restart", help="submit a finished workflow again; prints the new id")
    rs.add_argument("id")
    add_format(rs)

    dn = workflow.add_parser(
        "done", help="an interactive task waiting for you is done: outputs kept, downstream starts"
    )
    rt = workflow.add_parser("retry", help="run a task held for debugging again (a new attempt)")
    for p in (dn, rt):
        p.add_argument("id")
        p.add_argument("task")
        add_format(p)

    sp = workflow.add_parser("spec", help="a workflow's spec as submitted")
    sp.add_argument("id")
    sp.add_argument("--rendered", action="store_true", help="the spec after templating")
    add_format(sp)

    add_interactive_parsers(workflow)
    add_kernel_parser(workflow)


async def run_remote(args: argparse.Namespace, out: Output) -> int:
    file = getattr(args, "file", None)
    try:
        if args.group == "login":
            return _login(args, out)
        if args.group == "logout":
            removed = Credentials.remove()
            out.info("logged out" if removed else "not logged in")
            return EXIT_OK
        if args.group == "version":
            return _version(out)
        client = Client.from_credentials()
        handler = {
            "token": {"create": _token_create, "list": _token_list, "revoke": _token_revoke},
            "pool": {"list": _pools},
            "resource": {"list": _resources},
            "workflow": {
                "submit": _submit,
                "query": _query,
                "list": _list,
                "logs": _logs,
                "cancel": _cancel,
                "restart": _restart,
                "done": _hold_decision,
                "retry": _hold_decision,
                "spec": _spec,
                "exec": exec_command,
                "port-forward": port_forward_command,
                "kernel": kernel_command,
                "rsync": rsync_command,
            },
        }[args.group][args.cmd]
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
    me = client.get("me")
    path = Credentials(client.url, args.token).save()
    out.info(f"credentials saved in {path}")
    server = version.get("version", "?") if isinstance(version, dict) else "?"
    out.result(
        {"url": client.url, "version": server, "user": me["name"], "role": me["role"]},
        f"logged in to {client.url} (osmo {server}) as {me['name']} ({me['role']})",
    )
    return EXIT_OK


def _version(out: Output) -> int:
    from . import __version__

    info: dict[str, Any] = {"client": __version__}
    creds = Credentials.load()
    if creds is not None:
        try:
            info["server"] = Client(creds.url, creds.token).get("version")["version"]
            info["url"] = creds.url
        except (ApiError, Unreachable) as e:
            info["server_error"] = str(e)
    text = f"osmo {__version__}"
    if "server" in info:
        text += f"\nserver {info['url']}: osmo {info['server']}"
    elif "server_error" in info:
        text += f"\nserver: {info['server_error']}"
    out.result(info, text)
    return EXIT_OK


# --- tokens, pools, resources ------------------------------------------------------------


async def _token_create(client: Client, args: argparse.Namespace, out: Output) -> int:
    body = {"name": args.name, "user": args.user, "role": args.role}
    if args.expires_in_days:
        body["expires_in_days"] = args.expires_in_days
    made = client.post("tokens", body)
    expires = _when(made["expires_at"]) if made["expires_at"] else "never"
    out.info(f"token {made['id']} for {made['user']} ({made['role']}), expires {expires}")
    out.info("keep it now: the server shows it only once")
    out.result(made, made["token"])
    return EXIT_OK


async def _token_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    rows: list[dict[str, Any]] = client.get("tokens", user=args.user)
    if out.json:
        out.result(rows, "")
        return EXIT_OK
    print(f"{'ID':<12}  {'USER':<12} {'ROLE':<6} {'NAME':<16} {'EXPIRES':<19} STATE")
    for r in rows:
        expires = _when(r["expires_at"]) if r["expires_at"] else "never"
        state = "revoked" if r["revoked_at"] else "active"
        print(
            f"{r['id']:<12}  {r['user']:<12} {r['role']:<6} {r['name']:<16} {expires:<19} {state}"
        )
    return EXIT_OK


async def _token_revoke(client: Client, args: argparse.Namespace, out: Output) -> int:
    done = [client.delete(f"tokens/{token_id}") for token_id in args.ids]
    out.result(done, "\n".join(f"{d['id']}: revoked" for d in done))
    return EXIT_OK


async def _pools(client: Client, args: argparse.Namespace, out: Output) -> int:
    print_pools(client.get("pools"), out)
    return EXIT_OK


async def _resources(client: Client, args: argparse.Namespace, out: Output) -> int:
    print_resources(client.get("resources"), out)
    return EXIT_OK


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


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
    from .spec.localfiles import inline_localpaths

    text, name = _read(args.file)
    args.file = name
    # The server reads no file for its caller: `localpath` files (relative to the spec's
    # folder) are read here and sent inline.
    folder = Path(name).parent if name != "<stdin>" else Path.cwd()
    spec, set_values = inline_localpaths(
        text, base=folder, file=name, set_values=parse_set_values(args.set_values)
    )
    body: dict[str, Any] = {
        "spec": spec,
        "set_values": set_values or {},
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
    last = 0
    for attempt in range(RECONNECTS + 1):
        try:
            async for ev in client.stream("events", workflow_id=wf_id, after=last, logs="false"):
                if ev.get("type") == "resync":
                    continue  # the stored events it missed are replayed next
                last = ev["id"] or last
                _show(ev, out)
                if ev["type"] == "workflow.status" and WorkflowStatus(ev["status"]).terminal:
                    return client.get(f"workflows/{wf_id}")  # type: ignore[no-any-return]
        except Unreachable:
            if attempt == RECONNECTS:
                raise
        out.info(f"the server closed the event stream; reconnecting after event {last}")
        await asyncio.sleep(min(2**attempt * 0.2, 5))
    raise Unreachable(client.url, f"the event stream kept dropping ({RECONNECTS} reconnects)")


def _show(ev: dict[str, Any], out: Output) -> None:
    if out.json:
        return
    stamp = datetime.fromtimestamp(ev["ts"]).strftime("%H:%M:%S")
    if ev["type"] == "task.status" and ev["status"] not in _QUIET:
        code = ev["payload"].get("exit_code")
        extra = "" if code is None else f" exit {code}"
        retry = f" (retry {ev['retry_id']})" if ev["retry_id"] else ""
        out.info(f"{stamp} {ev['workflow_id']} {ev['task']} {ev['status']}{extra}{retry}")
    elif ev["type"] == "workflow.status":
        out.info(f"{stamp} {ev['workflow_id']} workflow {ev['status']}")
    elif ev["type"] == "task.hold":
        out.info(f"{stamp} {ev['workflow_id']} {ev['task']} {ev['payload'].get('message', '')}")


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
    start = 0
    if args.lines is not None:  # `-n N -f`: the last N lines so far, then new ones
        start = max(0, len(_log_lines(client, args)) - max(args.lines, 0))
    path = f"workflows/{args.id}/tasks/{args.task}/logs/follow"
    status = None
    async for msg in client.stream(path, retry_id=args.retry_id, start=start):
        if msg["type"] == "log":
            print(json.dumps(msg) if out.json else msg["text"], flush=True)
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
    res = client.post(f"workflows/{args.id}/restart")
    out.info(f"restarted {args.id} as {res['id']}")
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
