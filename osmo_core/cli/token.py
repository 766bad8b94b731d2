"""`osmo token create | list | revoke`: personal access tokens on the logged-in server."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .common import EXIT_OK, Output, add_format, name_subcommands
from .connect import with_client

if TYPE_CHECKING:
    from ..client import Client


def register(top: Any) -> None:
    tok = top.add_parser("token", help="personal access tokens on the server")
    cmds = tok.add_subparsers(dest="cmd", required=True)
    tc = cmds.add_parser("create", help="a new token (printed once)")
    tc.add_argument("name", help="what it is for")
    tc.add_argument("--user", help="admins: for this user")
    tc.add_argument("--role", choices=["user", "admin"], default="user", help="admins: admin")
    tc.add_argument("--expires-in-days", type=float, help="lifetime (default: until revoked)")
    add_format(tc)
    tc.set_defaults(run=with_client(_create))
    tl = cmds.add_parser("list", help="your tokens (admins: everyone's)")
    tl.add_argument("--user", help="admins: one user's")
    add_format(tl)
    tl.set_defaults(run=with_client(_list))
    tr = cmds.add_parser("revoke", help="revoke tokens by id")
    tr.add_argument("ids", nargs="+", metavar="ID")
    add_format(tr)
    tr.set_defaults(run=with_client(_revoke))
    name_subcommands(cmds)


async def _create(client: Client, args: argparse.Namespace, out: Output) -> int:
    body = {"name": args.name, "user": args.user, "role": args.role}
    if args.expires_in_days:
        body["expires_in_days"] = args.expires_in_days
    made = client.post("tokens", body)
    expires = _when(made["expires_at"]) if made["expires_at"] else "never"
    out.info(f"token {made['id']} for {made['user']} ({made['role']}), expires {expires}")
    out.info("keep it now: the server shows it only once")
    out.result(made, made["token"])
    return EXIT_OK


async def _list(client: Client, args: argparse.Namespace, out: Output) -> int:
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


async def _revoke(client: Client, args: argparse.Namespace, out: Output) -> int:
    done = [client.delete(f"tokens/{token_id}") for token_id in args.ids]
    out.result(done, "\n".join(f"{d['id']}: revoked" for d in done))
    return EXIT_OK


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
