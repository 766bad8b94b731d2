"""`osmo server ARGS`: the headless server, which is `jupyter osmo ARGS` (it lives in
osmo_jupyter). `main` hands the arguments over before parsing; the parser only lists it."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

NAME = "server"


def register(top: Any) -> None:
    top.add_parser(NAME, help="run the headless server (same as `jupyter osmo`)")


def exec_server(args: Sequence[str]) -> NoReturn:
    """Replace this process with `python -m osmo_jupyter ARGS`."""
    os.execv(sys.executable, [sys.executable, "-m", "osmo_jupyter", *args])
