"""`osmo pool list`: pools, their platforms and machines; the logged-in server's, else
the embedded default's."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import EXIT_OK, Output, add_format, load_capacity, name_subcommands, with_service
from .connect import logged_in, with_client

if TYPE_CHECKING:
    from ..client import Client
    from ..service import Service


def register(top: Any) -> None:
    group = top.add_parser("pool", help="pools and their capacity")
    cmds = group.add_subparsers(dest="cmd", required=True)
    ls = cmds.add_parser("list", help="pools, platforms and machines")
    add_format(ls)
    ls.set_defaults(run=_list)
    name_subcommands(cmds)


async def _list(args: argparse.Namespace, out: Output) -> int:
    if logged_in():
        return await with_client(_from_server)(args, out)
    return await with_service(_here)(args, out)


async def _from_server(client: Client, args: argparse.Namespace, out: Output) -> int:
    print_pools(client.get("pools"), out)
    return EXIT_OK


async def _here(service: Service, args: argparse.Namespace, out: Output) -> int:
    await load_capacity(service)
    print_pools(service.pools_info(), out)
    return EXIT_OK


def print_pools(info: list[dict[str, Any]], out: Output) -> None:
    if out.json:
        out.result(info, "")
        return
    for p in info:
        print(
            f"{p['name']}  backend={p['backend']}  default_platform={p['default_platform']}  "
            f"platforms={', '.join(p['platforms'])}"
        )
        for n in p["nodes"]:
            print(
                f"  {n['node']}: cpu {n['cpu']:g}, memory {n['memory'] / 2**30:.1f}Gi, "
                f"gpus {len(n['gpus'])}, arch {n['arch']}"
            )
