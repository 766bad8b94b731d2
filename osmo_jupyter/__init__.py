"""osmo_jupyter: the Jupyter server extension (control plane), magics and widgets."""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_server_extension_points"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import OsmoApp

    return [{"module": "osmo_jupyter.app", "app": OsmoApp}]
