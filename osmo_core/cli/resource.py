"""`osmo resource list`: every machine of every pool, its capacity and what is free; the
logged-in server's, else the embedded default's."""

from __future__ import annotations

from typing import Any

from .common import Output
from .connect import register_listing


def register(top: Any) -> None:
    register_listing(
        top,
        "resource",
        ("machines: capacity and what is free", "every machine of every pool"),
        "resources",
        lambda svc: svc.resources(),
        print_resources,
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
