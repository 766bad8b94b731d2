"""`osmo` command line: one module per command group, each adding its commands to the parser
(`register(top)`) and setting its run function; a command imports what it needs when it runs
(start-up time is a feature: the client, the Service and the interactive modules are not
imported to parse arguments or print `--version`).

common.py   exit codes, Output, shared options, the Service for commands that run here
connect.py  the client for commands that talk to a server, its answers as exit codes
workflow/   `osmo workflow ...` (local.py runs here, remote.py on the server, interactive.py,
            rsync.py and kernel.py reach into a running task)
pool.py, resource.py, dataset.py, cache.py, login.py (login, logout), token.py, credential.py,
version.py, server.py
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from .. import __version__
from . import server
from .common import Output, name_subcommands

# The modules whose `register(top)` adds the command groups, in the order `--help` lists them.
GROUPS = (
    "workflow",
    "pool",
    "resource",
    "dataset",
    "cache",
    "login",
    "token",
    "credential",
    "version",
    "server",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="osmo", description="Run OSMO workflows (DAGs of tasks).")
    p.add_argument("--version", action="version", version=f"osmo {__version__}")
    p.add_argument("--config", help="config file (default: $XDG_CONFIG_HOME/osmo/osmo_config.py)")
    top = p.add_subparsers(dest="group", required=True)
    for name in GROUPS:
        import_module(f"{__name__}.{name}").register(top)
    name_subcommands(top)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # before the parser, whose groups import their modules
        print(f"osmo {__version__}")
        return 0
    if argv[:1] == [server.NAME]:
        server.exec_server(argv[1:])  # its arguments are `jupyter osmo`'s, not parsed here
    args = build_parser().parse_args(argv)
    import asyncio  # not for --version or --help

    try:
        code: int = asyncio.run(args.run(args, Output(getattr(args, "format", "text"))))
        return code
    except KeyboardInterrupt:
        return 130
