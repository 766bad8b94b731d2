"""`osmo cache clear`: forget task-cache entries on the logged-in server (engine/cache.py)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import EXIT_OK, Output, add_format, name_subcommands
from .connect import with_client

if TYPE_CHECKING:
    from ..client import Client


def register(top: Any) -> None:
    cache = top.add_parser("cache", help="the task cache on the server")
    cmds = cache.add_subparsers(dest="cmd", required=True)
    cc = cmds.add_parser(
        "clear", help="forget cache entries: the next run of those tasks runs their command"
    )
    cc.add_argument("--task", help="only this task's entries (default: every task's)")
    cc.add_argument("--user", help="admins: only this user's workflows (default: everyone's)")
    add_format(cc)
    cc.set_defaults(run=with_client(_clear))
    name_subcommands(cmds)


async def _clear(client: Client, args: argparse.Namespace, out: Output) -> int:
    res = client.post("cache/clear", {"task": args.task, "user": args.user})
    out.result(res, f"{res['cleared']} cache entries cleared")
    return EXIT_OK
