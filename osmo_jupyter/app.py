"""OsmoApp: the jupyter_server extension hosting the control plane.

Lifecycle (jupyter_server's ExtensionApp hooks):
- `initialize_settings()` (server start, loop not running): builds `OsmoConfig(parent=self)` from
  the server's config (`c.OsmoConfig.*`, `--OsmoConfig.*=`) and the `Service`; a ConfigError makes
  the server refuse to start, naming the trait and the value.
- `_start_jupyter_server_extension()` (first turn of the server's loop): starts the Service (store,
  engine, local agent). Requests arriving earlier wait for it; if it fails they get 503.
- `stop_extension()` (server shutdown): stops the Service (agents outlive it by design).

Headless (`jupyter osmo`), the server's identity provider is `OsmoIdentityProvider` (personal
access tokens and OIDC JWTs besides the server's own token) and its authorizer `OsmoAuthorizer`
(Jupyter's own surfaces follow OSMO's roles) unless the configuration names others; inside
`jupyter lab` both are left as they are (identity.py, authorizer.py: set them in the config).
Started as a JupyterHub service (the Hub's environment, hub.py), it also accepts the Hub's users.

Client mode (`OsmoApp.service_url`, default `$OSMO_SERVICE_URL`; remote.py): a user's own Lab
whose OSMO is a shared service. No Service here: the API routes forward to the service as the
Lab's user, task kernels start there, and kernels reach it through this server.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING, Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Unicode, default

from osmo_core.config import OsmoConfig
from osmo_core.errors import ConfigError, Problem
from osmo_core.service import Service

from .access import ServiceUnavailable
from .authorizer import OsmoAuthorizer
from .hub import HubUsers, hub_service_environment
from .identity import OsmoIdentityProvider
from .kernel_env import install as install_kernel_env
from .kernels import install as install_kernels
from .metrics import ServiceMetrics
from .remote import ENV_SERVICE_URL, Upstream
from .remote import handlers as forward_handlers
from .server import osmo_api
from .server.base import API_PREFIX
from .server.proxy import install_app_host
from .server.routes import handlers
from .server_env import export_server_environment

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp


class OsmoApp(ExtensionApp):
    name = "osmo"
    description = "osmo-jupyter control plane: a Jupyter server running workflows (headless)"
    extension_url = f"/{API_PREFIX}/version"
    load_other_extensions = True
    classes = [OsmoConfig]
    # `jupyter osmo` runs headless: a server for a team, no browser, no notebook UI needed.
    serverapp_config = {"open_browser": False}

    service_url = Unicode(
        help="Client mode: the URL of a shared OSMO control plane (`jupyter osmo` run as a "
        "JupyterHub service), e.g. `http://127.0.0.1:10101/services/osmo`. This server then runs "
        "no engine: the panel, magics, Client(), terminals and task kernels all use that "
        "service as this server's user. Empty: the engine runs here.",
    ).tag(config=True)
    service_token = Unicode(
        help="Client mode: the token this server's user reaches the service with (default: "
        "$JUPYTERHUB_API_TOKEN, the token the Hub gives a user's server; the Hub's config "
        "must grant it the service's access scope).",
    ).tag(config=True)

    @default("service_url")
    def _default_service_url(self) -> str:
        return os.environ.get(ENV_SERVICE_URL, "")

    @default("service_token")
    def _default_service_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    service: Service | None = None
    upstream: Upstream | None = None
    hub_users: HubUsers | None = None
    _start_task: asyncio.Task[Service] | None = None
    _stopped = False
    _metrics: ServiceMetrics | None = None

    @property
    def server(self) -> ServerApp:
        """The server this extension is loaded in: set before any hook of ours runs."""
        assert self.serverapp is not None
        return self.serverapp

    def _jupyter_server_config(self) -> dict[str, Any]:
        """Server settings applied when `jupyter osmo` starts the server (only then)."""
        from jupyter_server.serverapp import ServerApp

        config: dict[str, Any] = super()._jupyter_server_config()
        for trait, ours in (
            ("identity_provider_class", OsmoIdentityProvider),
            ("authorizer_class", OsmoAuthorizer),
        ):
            chosen = ServerApp.initialized() and trait in ServerApp.instance().config.ServerApp
            if not chosen:  # an admin's own choice (e.g. JupyterHub's) wins
                config["ServerApp"][trait] = ours
        return config

    def initialize_settings(self) -> None:
        self.settings["osmo_app"] = self
        if self.service_url:
            try:
                upstream = self.upstream = Upstream(self.service_url, self.service_token)
            except ValueError as e:
                self.log.critical("osmo: the server cannot start: %s", e)
                self.exit(1)
            self.settings["osmo_upstream"] = upstream
            self.log.info("osmo: client mode, the control plane is %s", upstream.url)
            install_kernels(self)
            install_kernel_env()
            return
        try:
            try:
                config = OsmoConfig(parent=self)
            except ConfigError:
                raise
            except Exception as e:  # traitlets' TraitError: name the trait and the value
                raise ConfigError(Problem(str(e), field="OsmoConfig")) from e
            # headless: `jupyter osmo`'s identity provider, a server for a team (isolation)
            headless = isinstance(self.server.identity_provider, OsmoIdentityProvider)
            self.service = Service(config, headless=headless)
        except ConfigError as e:
            self.log.critical("osmo: the server cannot start: %s", e)
            self.exit(1)
        if headless:
            self._stop_on_sigint()
        if headless and hub_service_environment():  # a JupyterHub service: the Hub's users too
            self.hub_users = HubUsers(config.hub_group_roles)
            self.log.info("osmo: a JupyterHub service (%s)", self.hub_users.name)
        install_kernels(self)  # "OSMO: WF/TASK" kernel specs for running tasks
        install_kernel_env()  # local kernels get the server's URL and their starter's token

    def _stop_on_sigint(self) -> None:
        """SIGINT stops the headless server as SIGTERM does, even where the parent ignored it
        (a shell's background job, nohup): Python then leaves SIGINT ignored, and JupyterHub,
        which stops its managed services with SIGINT, sends SIGTERM only 30 s later. A clean
        stop loses nothing here (workflows resume, agents outlive the server), so there is no
        "Shutdown this Jupyter server (y/[n])?" prompt either (JupyterHub's Labs skip it too)."""
        signal.signal(signal.SIGINT, self.server._signal_stop)

    def initialize_handlers(self) -> None:
        if self.upstream is not None:
            self.handlers.extend(forward_handlers())
            return
        self.handlers.extend(handlers())
        self.handlers.extend(osmo_api.handlers())  # OSMO's own CLI (docs/osmo-cli.md)
        if self.hub_users is not None:  # the end of the Hub's OAuth flow for a browser
            self.handlers.append(self.hub_users.callback_handler())
        if self.service is not None:  # a task app's own host name answers app links only
            base_url = self.server.base_url
            install_app_host(self.server.web_app, base_url, self.service.config.app_proxy_url)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        export_server_environment(serverapp)  # kernels this server starts find it (Client())
        install_kernels(self)  # again: the web settings exist now
        if self.upstream is not None:  # client mode: the service has the metrics
            return
        try:
            self._metrics = ServiceMetrics(await self.ready()).start()
        except ServiceUnavailable as e:
            self.log.critical("osmo: %s", e)

    def start_service(self) -> asyncio.Task[Service]:
        """Start the Service on the running loop (once); the task answers when it is up."""
        if self._stopped:
            raise ServiceUnavailable("the osmo service was stopped")
        if self.service is None:
            raise ServiceUnavailable(f"client mode: the control plane is {self.service_url}")
        if self._start_task is None:
            self._start_task = asyncio.create_task(self.service.start(), name="osmo-start")
        return self._start_task

    async def ready(self) -> Service:
        """The started Service; ServiceUnavailable if it could not start or was stopped."""
        task = self.start_service()
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()  # the common case, without a shield per request
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise ServiceUnavailable("the osmo service was stopped") from None
            raise
        except Exception as e:
            raise ServiceUnavailable(f"the osmo service failed to start: {e}") from e

    async def stop_extension(self) -> None:
        self._stopped = True
        if self.upstream is not None:
            await self.upstream.close()
        if self._metrics is not None:
            await self._metrics.stop()
        task, self._start_task = self._start_task, None
        if task is None or self.service is None:
            return
        if not task.done():
            task.cancel()
        try:
            await task
        except BaseException:  # never started: nothing to stop
            return
        await self.service.stop()
        self.log.info("osmo: service stopped")


# `jupyter osmo` (console script `jupyter-osmo`); config from jupyter_osmo_config.py, flags, env.
main = launch_new_instance = OsmoApp.launch_instance
