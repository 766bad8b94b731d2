"""jupyterhub_config.py: OSMO's control plane as a JupyterHub service, every user's Lab on it.

Run `jupyterhub -f jupyterhub_config.py` (as root, or with a spawner that can start servers as
your users). docs/jupyterhub.md explains each part; tests/hub/ starts a Hub from this file.
"""

import os

c = get_config()  # noqa: F821 (JupyterHub's config loader defines it)

# Where the control plane listens: the Hub starts it (a managed service) and its proxy
# routes /services/osmo/ there; agents dial home to it (OsmoConfig.interactive_*).
OSMO_PORT = int(os.environ.get("OSMO_SERVICE_PORT", "10101"))
OSMO_URL = f"http://127.0.0.1:{OSMO_PORT}"
PREFIX = "/services/osmo/"

c.JupyterHub.services = [
    {
        "name": "osmo",
        "url": OSMO_URL,
        "command": [
            "jupyter",
            "osmo",
            "--ip=127.0.0.1",
            f"--port={OSMO_PORT}",
            f"--ServerApp.base_url={PREFIX}",
            # a data folder for the team's store, agents' keys and logs
            "--OsmoConfig.data_dir=/srv/osmo",
            # Hub groups → OSMO roles; the Hub's admins are OSMO admins anyway
            "--OsmoConfig.hub_group_roles={'osmo-admins': 'admin'}",
        ],
        "oauth_no_confirm": True,
    }
]

c.JupyterHub.load_roles = [
    # every user may reach the service (with their Hub token, or a browser's OAuth login)
    {"name": "user", "scopes": ["self", "access:services!service=osmo"]},
    # the service reads users' admin flags and groups
    {"name": "osmo-service", "services": ["osmo"], "scopes": ["read:users", "read:groups"]},
]

# Each user's Lab runs in client mode: no engine of its own; the panel, %osmo, Client(),
# terminals and task kernels use the service as that user, with the token the Hub gives the
# user's server (JUPYTERHUB_API_TOKEN), which must be allowed to reach the service too.
c.Spawner.environment = {"OSMO_SERVICE_URL": OSMO_URL + PREFIX.rstrip("/")}
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=osmo",
]
c.Spawner.default_url = "/lab"
