"""How a kernel finds the Jupyter server that started it: the environment variables the
server gives each kernel (kernel_env.py sets them, `Client()` reads them), and the server's own
environment set up for its kernels. Server side and notebook side both import this; it imports
neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV_URL = "OSMO_SERVER_URL"
ENV_TOKEN = "OSMO_SERVER_TOKEN"


def server_url(serverapp: Any) -> str:
    """The URL a kernel of this server reaches it at."""
    ip = serverapp.ip if serverapp.ip not in ("", "0.0.0.0", "::", "*", "localhost") else None
    host = ip or "127.0.0.1"
    scheme = "https" if serverapp.certfile else "http"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{serverapp.port}{serverapp.base_url.rstrip('/')}"


def export_server_environment(serverapp: Any) -> None:
    """Have this server's IPython kernels load the `%osmo` magics. The server's URL and a
    token reach each kernel through its own environment only (kernel_env.py): a token in the
    server's environment would reach terminals, the agent and every task."""
    # The server's token lives in its identity provider (which has read JUPYTER_TOKEN by now),
    # not in the environment its terminals and kernels start from.
    for name in (ENV_TOKEN, "JUPYTER_TOKEN"):
        os.environ.pop(name, None)
    # `%osmo` in every IPython kernel of this server, with no `%load_ext` (kernel_startup.py
    # chains to the user's own PYTHONSTARTUP).
    startup = str(Path(__file__).with_name("kernel_startup.py"))
    if os.environ.get("PYTHONSTARTUP") not in (None, "", startup):
        os.environ["OSMO_USER_PYTHONSTARTUP"] = os.environ["PYTHONSTARTUP"]
    os.environ["PYTHONSTARTUP"] = startup
