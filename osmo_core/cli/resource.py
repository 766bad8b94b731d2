"""`osmo resource list`: every machine of every pool, its capacity and what is free; the
logged-in server's, else the embedded default's."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import EXIT_OK, Output, add_format, load_capacity, name_subcommands, with_service
from .connect import logged_in, with_client

if TYPE_CHECKING:
    from ..client import Client
    from ..service import Service


def register(top: Any) -> None:
    group = top.add_parser("resource", help="machines: capacity and what is free")
    cmds = group.add_subparsers(dest="cmd", required=True)
    ls = cmds.add_parser("list", help="every machine of every pool")
    add_format(ls)
    ls.set_defaults(run=_list)
    name_subcommands(cmds)


async def _list(args: argparse.Namespace, out: Output) -> int:
    if logged_in():
        return await with_client(_from_server)(args, out)
    return await with_service(_here)(args, out)


async def _from_server(client: Client, args: argparse.Namespace, out: Output) -> int:
    print_resources(client.get("resources"), out)
    return EXIT_OK


async def _here(service: Service, args: argparse.Namespace, out: Output) -> int:
    await load_capacity(service)
    print_resources(service.resources(), out)
    return EXIT_OK


def print_resources(nodes: list[dict[str, Any]], out: Output) -> None:
    if out.json:
        out.result(nodes, "")
        return
    row = "{:<24} {:<12} {:<8} {:<8} {:<14} {:<18} {}".format
    print(row("NODE", "POOLS", "ARCH", "STATE", "CPU FREE/ALL", "MEMORY FREE/ALL", "GPUS FREE/ALL"))
    for n in nodes:
        cpu = f"{n['free_cpu']:g}/{n['cpu']:g}"
        mem = f"{n['free_memory'] / 2**30:.1f}/{n['memory'] / 2**30:.1f}Gi"
        gpus = f"{len(n['free_gpus'])}/{len(n['gpus'])}"
        state = "online" if n.get("online", True) else "offline"  # ssh: its agent connected
        print(row(n["node"], ",".join(n["pools"]), n["arch"], state, cpu, mem, gpus))
