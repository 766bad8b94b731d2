"""`osmo credential set | list | delete`: your own credentials on the logged-in server, with
OSMO's flags (auth/user_credentials.py says what each type holds and how tasks use it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, Problem
from .common import EXIT_OK, Output, add_format, name_subcommands
from .connect import with_client

if TYPE_CHECKING:
    from ..client import Client

TYPES = ("REGISTRY", "DATA", "GENERIC")


def register(top: Any) -> None:
    cred = top.add_parser("credential", help="your credentials on the server (OSMO's)")
    cmds = cred.add_subparsers(dest="cmd", required=True)
    cs = cmds.add_parser(
        "set",
        help="create or replace a credential",
        epilog="e.g. osmo credential set lake --type DATA --payload endpoint=s3://bucket "
        "access_key_id=ID access_key=SECRET; osmo credential set key --payload-file "
        "ssh_key=~/.ssh/id_ed25519",
    )
    cs.add_argument("name", help="letters, digits, - and _, starting with a letter")
    cs.add_argument("--type", choices=TYPES, default="GENERIC", help="(default GENERIC)")
    given = cs.add_mutually_exclusive_group(required=True)
    given.add_argument("--payload", nargs="+", metavar="KEY=VALUE", help="the fields")
    given.add_argument(
        "--payload-file", nargs="+", metavar="KEY=PATH", help="fields read from files"
    )
    add_format(cs)
    cs.set_defaults(run=with_client(_set))
    cl = cmds.add_parser("list", help="your credentials, never their secrets")
    cl.add_argument("--user", help="admins: one user's (`*`: everyone's)")
    add_format(cl)
    cl.set_defaults(run=with_client(_list))
    cd = cmds.add_parser("delete", help="delete a credential")
    cd.add_argument("name")
    cd.add_argument("--user", help="admins: another user's")
    add_format(cd)
    cd.set_defaults(run=with_client(_delete))
    name_subcommands(cmds)


def payload_of(args: argparse.Namespace) -> dict[str, str]:
    """KEY=VALUE pairs (from files with --payload-file; one trailing newline dropped, as OSMO);
    InputError naming each bad pair."""
    flag, pairs = (
        ("--payload", args.payload) if args.payload else ("--payload-file", args.payload_file)
    )
    out, problems = {}, []
    for i, pair in enumerate(pairs):
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            problems.append(Problem(f"expected KEY=VALUE, got {pair!r}", field=f"{flag}[{i}]"))
        elif args.payload_file:
            try:
                out[key] = Path(value).expanduser().read_text().rstrip("\r\n")
            except OSError as e:
                problems.append(Problem(f"cannot read {value}: {e.strerror}", field=f"{flag}[{i}]"))
        else:
            out[key] = value
    if problems:
        raise InputError(problems)
    return out


async def _set(client: Client, args: argparse.Namespace, out: Output) -> int:
    body = {"type": args.type, "payload": payload_of(args)}
    made = client.request("PUT", f"credentials/{args.name}", body=body)
    out.result(made, f"Set {made['type']} credential {made['name']}.")
    return EXIT_OK


async def _list(client: Client, args: argparse.Namespace, out: Output) -> int:
    rows: list[dict[str, Any]] = client.get("credentials", user=args.user)
    if out.json:
        out.result(rows, "")
        return EXIT_OK
    print(f"{'NAME':<20} {'TYPE':<9} {'USER':<12} PROFILE / KEYS")
    for r in rows:
        profile = r["fields"].get("endpoint") or r["fields"].get("registry") or ", ".join(r["keys"])
        print(f"{r['name']:<20} {r['type']:<9} {r['user']:<12} {profile}")
    return EXIT_OK


async def _delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    path = f"credentials/{args.name}"
    gone = client.request("DELETE", path, params={"user": args.user} if args.user else None)
    out.result(gone, f"Deleted credential {gone['name']}.")
    return EXIT_OK
