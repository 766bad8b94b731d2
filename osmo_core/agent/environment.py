"""What never crosses from the control plane into an agent or a task: one deny-list.

Used where an agent starts (the local backend's spawn; the agent itself at start, which covers
agents on SSH hosts and in pods whatever started them) and for the base environment of every
task (supervisor.py).

A deny-list, not an allow-list: on a user's own machine a task is that user's process and
relies on whatever their shell has (PATH, conda and venv variables, CUDA_*, LD_LIBRARY_PATH,
proxies, caches, licences, ...), an open-ended set that an allow-list would break. What must
not cross is a closed set the control plane itself knows: its own credentials and Jupyter's.
The host's own cloud SDK variables (AWS_*, AZURE_*) stay: the agent moves data with them when
no configured credential matches. A team server should keep none in its environment and
configure named credentials instead (OsmoConfig.credentials, with allow-lists).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

SERVER_TOKEN = "OSMO_SERVER_TOKEN"  # the server's token (admin) or a kernel's own token

# Control-plane secrets by name: the API token, the store (its URL may hold a database
# password; psycopg reads PGPASSWORD), and the operator's SSH agent (it logs into SSH hosts).
DENIED_NAMES = frozenset({SERVER_TOKEN, "OSMO_STORE_URL", "PGPASSWORD", "SSH_AUTH_SOCK"})
# Jupyter's own: JUPYTER_TOKEN is the server's token, JUPYTER_RUNTIME_DIR holds it in a file,
# JPY_API_TOKEN / JUPYTERHUB_API_TOKEN are the hub's credentials of a single-user server.
DENIED_PREFIXES = ("JUPYTER_", "JPY_", "JUPYTERHUB_")


def denied(name: str) -> bool:
    """Whether the variable `name` may never reach an agent or a task."""
    return name in DENIED_NAMES or name.startswith(DENIED_PREFIXES)


def scrubbed(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the variables that never reach an agent or a task."""
    return {k: v for k, v in environ.items() if not denied(k)}


def scrub(environ: MutableMapping[str, str] = os.environ) -> None:
    """Remove them in place (the agent from its own environment, at start)."""
    for name in [k for k in environ if denied(k)]:
        del environ[name]
