"""What every `osmo` command shares: exit codes, the Output (text for people, JSON for
scripts), the common options, and the one mapping from osmo_core's errors to exit codes.

Exit codes: 0 done (the workflow COMPLETED), 1 failed, 2 invalid input, 3 a valid spec the pool
cannot run, 4 not found / conflict (another engine on this data directory, the workflow already
ended), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from .errors import Conflict, InputError, NotFound, OsmoError, PlacementError

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_PLACEMENT, EXIT_CONFLICT = 0, 1, 2, 3, 4


def add_format(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--format", choices=["text", "json"], default="text")


def add_set_values(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--set",
        dest="set_values",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override default-values (repeatable)",
    )


def report(e: OsmoError, out: Output) -> int:
    """Tell the user what went wrong; the exit code for it."""
    if isinstance(e, InputError):
        out.problems(e)
        return EXIT_PLACEMENT if isinstance(e, PlacementError) else EXIT_INVALID
    if isinstance(e, Conflict | NotFound):
        out.error(str(e))
        return EXIT_CONFLICT
    out.error(f"{type(e).__name__}: {e}")
    return EXIT_FAILED


class Output:
    """Text for people, JSON for scripts: results on stdout, progress and errors on stderr."""

    def __init__(self, fmt: str, stream: TextIO | None = None):
        self.json = fmt == "json"
        self.err = stream or sys.stderr

    def info(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def error(self, text: str) -> None:
        if self.json:
            print(json.dumps({"error": text}))
        else:
            print(f"error: {text}", file=self.err)

    def result(self, data: Any, text: str) -> None:
        print(json.dumps(data, default=str) if self.json else text, flush=True)

    def problems(self, e: InputError) -> None:
        if self.json:
            print(json.dumps({"error": e.kind, "details": [p.to_dict() for p in e.problems]}))
            return
        print(f"{e.kind}:", file=self.err)
        for p in e.problems:
            print(f"  {p}", file=self.err)

    def summary(self, wf: dict[str, Any]) -> None:
        if self.json:
            print(json.dumps(wf, default=str))
            return
        latest: dict[str, dict[str, Any]] = {}
        for t in wf["tasks"]:
            latest[t["name"]] = t
        dur = _duration(wf["start_time"], wf["end_time"])
        print(f"{wf['id']}: {wf['status']}" + (f" in {dur}" if dur else ""))
        width = max((len(n) for n in latest), default=4)
        for name, t in latest.items():
            code = "" if t["exit_code"] is None else f"exit {t['exit_code']}"
            retry = f" (attempt {t['retry_id'] + 1})" if t["retry_id"] else ""
            msg = f"  {t['message']}" if t["message"] and t["status"] != "COMPLETED" else ""
            print(
                f"  {name:<{width}}  {t['status']:<20} {code:<8}"
                f"{_duration(t['start_time'], t['end_time']):>8}{retry}{msg}"
            )


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


def _duration(start: float | None, end: float | None) -> str:
    if not start:
        return ""
    secs = (end or time.time()) - start
    if secs < 10:
        return f"{secs:.2f}s"
    return f"{secs:.1f}s" if secs < 120 else f"{int(secs // 60)}m{int(secs % 60):02d}s"
