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
        for n in p["nodes"]:
            print(
                f"  {n['node']}: cpu {n['cpu']:g}, memory {n['memory'] / 2**30:.1f}Gi, "
                f"gpus {len(n['gpus'])}, arch {n['arch']}"
            )
