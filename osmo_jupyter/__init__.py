"""osmo_jupyter: the Jupyter server extension (control plane), the Python client, the `%osmo`
magics and the workflow widgets."""

from __future__ import annotations

from typing import Any

from .client import Client
from .records import TaskInfo
from .workflow import Workflow

__all__ = [
    "Client",
    "TaskInfo",
    "Workflow",
    "_jupyter_labextension_paths",
    "_jupyter_server_extension_points",
    "load_ipython_extension",
]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import OsmoApp

    return [{"module": "osmo_jupyter.app", "app": OsmoApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt lab extension (labextension/ builds into osmo_jupyter/labextension), for
    `jupyter labextension develop --overwrite .` in a checkout; wheels install it as shared data."""
    return [{"src": "labextension", "dest": "@osmo-jupyter/labextension"}]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext osmo_jupyter`: registers `%osmo` / `%%osmo`."""
    from .magics import OsmoMagics

    ipython.register_magics(OsmoMagics(ipython))
