"""What a kernel this server starts is given: where the server is, and a token of its own.

The server keeps no token in its environment (terminals, the agent and every task would inherit
it). A kernel started through the server gets, in its own environment only:

- `OSMO_SERVER_URL`: this server;
- `OSMO_SERVER_TOKEN`: a personal access token of the user who started the kernel (the
  request's principal, kernels.CURRENT_PRINCIPAL) with that user's role, expiring after
  `OsmoConfig.kernel_token_hours`, renewed when the kernel restarts (still its starter's) and
  revoked when it shuts down; `Client()` and the
  `%osmo` magics in a notebook then act as that user, never as the server's admin. Under
  jupyter_server's own single-user identity providers (`jupyter lab`), which accept only the
  server's token, the owner's kernels get that token: the owner is the admin, it is theirs.
  Under any other provider (JupyterHub's) no token is added, except in client mode
  (remote.py): there the token is the user's own Hub token (`OsmoApp.service_token`), which
  this server accepts and forwards to the shared service.
- for a starter who is not an admin (a user of a team server), nothing else of the server's
  secrets either: the environment is scrubbed as a task's is (osmo_core/agent/environment.py).
  The owner's kernels keep the server's environment, which is theirs.

The hook is jupyter_client's: `OsmoLocalProvisioner` is its local provisioner plus this
environment, made the default provisioner of this process (a kernel spec naming its own
provisioner keeps it; so does a server configured with another default).
"""

from __future__ import annotations

import importlib.metadata
from typing import TYPE_CHECKING, Any

from jupyter_client.provisioning.factory import KernelProvisionerFactory
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider

from osmo_core.agent.environment import scrubbed
from osmo_core.auth import Principal

from .access import current_principal
from .identity import OsmoIdentityProvider
from .server_env import ENV_TOKEN, ENV_URL, server_url

if TYPE_CHECKING:
    from .app import OsmoApp

PROVISIONER = "osmo-local"
_STOCK = "local-provisioner"
_SERVER_TOKEN_ONLY = (IdentityProvider, PasswordIdentityProvider)


class OsmoLocalProvisioner(LocalProvisioner):
    """A local kernel whose environment names this server and carries its starter's token."""

    _token: str | None = None
    _token_id: str | None = None
    _owner: Principal | None = None
    _launched = False

    def _app(self) -> OsmoApp | None:
        ksm = getattr(self.parent, "kernel_spec_manager", None)
        return getattr(ksm, "osmo_app", None)

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        app = self._app()
        if app is None:  # a kernel manager outside an osmo server: a plain local kernel
            return kwargs
        env: dict[str, str] = kwargs["env"]
        if app.upstream is not None:  # client mode: the user's own token reaches the service
            env[ENV_URL], env[ENV_TOKEN] = server_url(app.serverapp), app.upstream.token
            return kwargs
        if not self._launched:  # the owner is who started it, whoever restarts it later
            self._owner, self._launched = current_principal(app), True
        # A fresh token at each (re)start, so restarting renews an expired one.
        old, self._token = self._token_id, await self._mint(app, self._owner)
        self._revoke(old)
        env.pop(ENV_TOKEN, None)  # whatever the server's environment had: never the admin's
        if self._owner is not None and not self._owner.is_admin:
            # Not the server's owner: none of the server's secrets either (JUPYTER_TOKEN, ...)
            env = kwargs["env"] = scrubbed(env)
        env[ENV_URL] = server_url(app.serverapp)
        if self._token:
            env[ENV_TOKEN] = self._token
        return kwargs

    async def _mint(self, app: OsmoApp, who: Principal | None) -> str | None:
        self._token_id = None
        idp = app.server.identity_provider
        if who is None:
            return None
        if type(idp) in _SERVER_TOKEN_ONLY:  # `jupyter lab`: only the owner gets here
            return (idp.token or None) if who.is_admin else None
        if not isinstance(idp, OsmoIdentityProvider):  # JupyterHub's and others: theirs
            return None
        try:
            svc = await app.ready()
            text, row = svc.auth.tokens.create(
                who,
                name=f"kernel {self.kernel_id}",
                role=who.role,
                expires_in=svc.config.kernel_token_hours * 3600,
            )
        except Exception as e:  # the kernel still starts; its Client() then gets a 401
            self.log.warning("osmo: no token for kernel %s: %s", self.kernel_id, e)
            return None
        self._token_id = row["id"]
        return text

    def _revoke(self, token_id: str | None) -> None:
        svc = getattr(self._app(), "service", None)
        if token_id is None or svc is None or self._owner is None:
            return
        try:
            svc.auth.tokens.revoke(token_id, self._owner)
        except Exception as e:  # server shutting down (store closed): the token expires
            self.log.warning(
                "osmo: kernel %s: token %s not revoked: %s", self.kernel_id, token_id, e
            )

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if not restart:  # a restart replaces the token in pre_launch
            token_id, self._token_id, self._token = self._token_id, None, None
            self._revoke(token_id)


def install() -> None:
    """Make `OsmoLocalProvisioner` the default provisioner, unless another was configured."""
    factory = KernelProvisionerFactory.instance()
    # Registered here as well as in pyproject's entry points (an editable checkout whose
    # installed metadata predates the entry point still finds it).
    if PROVISIONER not in factory.provisioners:
        factory.provisioners[PROVISIONER] = importlib.metadata.EntryPoint(
            name=PROVISIONER,
            value=f"{__name__}:OsmoLocalProvisioner",
            group="jupyter_client.kernel_provisioners",
        )
    if factory.default_provisioner_name == _STOCK:
        factory.default_provisioner_name = PROVISIONER
