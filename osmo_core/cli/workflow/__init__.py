"""`osmo workflow ...`: one module per kind of verb, each adding its own subcommands.

local.py    validate, run, resume — here, on the embedded default (live.py follows them)
remote.py   submit, query, list, logs, cancel, restart, spec, done, retry — on the server
interactive.py  exec, port-forward;  rsync.py  rsync;  kernel.py  kernel — into a running task
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ..common import name_subcommands

# The modules whose `register(cmds)` adds the workflow verbs, in the order `--help` lists them.
VERBS = ("local", "remote", "interactive", "rsync", "kernel")


def register(top: Any) -> None:
    wf = top.add_parser("workflow", help="validate and run workflows")
    cmds = wf.add_subparsers(dest="cmd", required=True)
    for name in VERBS:
        import_module(f"{__name__}.{name}").register(cmds)
    name_subcommands(cmds)
