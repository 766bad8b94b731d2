"""`osmo pool list`: pools, their platforms and machines; the logged-in server's, else
the embedded default's."""

from __future__ import annotations

from typing import Any

from .common import Output
from .connect import register_listing


def register(top: Any) -> None:
    register_listing(
        top,
        "pool",
        ("pools and their capacity", "pools, platforms and machines"),
        "pools",
        lambda svc: svc.pools_info(),
        print_pools,
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
        if "capacity" in p:  # a server from before issue 17 does not send these
            print("  " + _scheduling(p))
        for n in p["nodes"]:
            print(
                f"  {n['node']}: cpu {n['cpu']:g}, memory {n['memory'] / 2**30:.1f}Gi, "
                f"gpus {len(n['gpus'])}, arch {n['arch']}"
            )


def _amount(a: dict[str, Any]) -> str:
    return f"gpu {a['gpu']}, cpu {a['cpu']:g}, memory {a['memory'] / 2**30:.1f}Gi"


def _scheduling(p: dict[str, Any]) -> str:
    """Quota, capacity, used by priority, borrowed, queue length: one line."""
    quota = p["quota"]
    shown = (
        ", ".join(
            f"{k} {v / 2**30:.1f}Gi" if k == "memory" else f"{k} {v:g}"
            for k, v in quota.items()
            if v is not None
        )
        if quota
        else "none"
    )
    used = "; ".join(f"{prio} {a['gpu']}" for prio, a in p["used"].items())
    return (
        f"quota: {shown} | capacity: {_amount(p['capacity'])} | GPUs used: {used} | "
        f"borrowed: {p['borrowed']['gpu']} GPUs | queued: {p['queued']} | "
        f"fair share: {p['fair_share']}"
    )
