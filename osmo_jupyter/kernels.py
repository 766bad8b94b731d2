"""Remote kernels: every RUNNING task of the user is a kernelspec "OSMO: WF/TASK".

- `OsmoKernelSpecManager` wraps the server's own kernel spec manager (normal kernels are
  untouched) and adds one spec per running task the caller may reach (their own; an admin's:
  all), built on demand from the store — nothing is written to disk. `install()` puts it in
  place when the extension loads (the server, its kernel manager and the web settings all hold
  the same object), so it works inside `jupyter lab` as well as `jupyter osmo`.
- `OsmoTaskProvisioner` (entry point `osmo-task` in group `jupyter_client.kernel_provisioners`)
  launches the kernel inside the task through the agent (osmo_core/interactive/kernel.py) and
  reports 127.0.0.1 ports tunnelled there. Interrupt (`interrupt_mode: signal`), restart (the
  same local ports again) and shutdown are jupyter_client's own, over the tunnel. When the task
  ends, the kernel prints why in the running cell and exits, and the server gives up on it at
  once (no auto-restart into a task that is gone): it is removed, and the reason is logged.

Who may: the principal of the request (recorded per request by `install`, which wraps the
server's identity provider; osmo's own rules, identity.py) must own the workflow or be an admin;
else 403. Specs are listed per caller the same way; under `OsmoAuthorizer` a user, who may start
no kernel on the server itself, sees their own tasks' specs only (authorizer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import inspect
import os
import signal
from typing import TYPE_CHECKING, Any, cast

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.provisioning.factory import KernelProvisionerFactory
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from tornado import web
from traitlets import Instance, Unicode

from osmo_core.auth import policy
from osmo_core.errors import BackendError, Forbidden, OsmoError
from osmo_core.interactive.kernel import RemoteKernel

from ._attach import PREFIX, ServerKernel, spec_name
from .access import CURRENT_PRINCIPAL, current_principal, running_tasks, started
from .authorizer import OsmoAuthorizer
from .identity import principal_of
from .server.base import from_osmo_error

if TYPE_CHECKING:
    from .app import OsmoApp

PROVISIONER = "osmo-task"


def _logo_dir() -> str:
    try:
        from ipykernel.kernelspec import RESOURCES

        return str(RESOURCES)
    except ImportError:  # no logo then
        return os.path.dirname(__file__)


def task_spec(wf_id: str, task: str) -> KernelSpec:
    return KernelSpec(
        argv=["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],  # run in the task
        display_name=f"OSMO: {wf_id}/{task}",
        language="python",
        interrupt_mode="signal",
        resource_dir=_logo_dir(),
        metadata={
            "osmo": {"workflow": wf_id, "task": task},
            "kernel_provisioner": {
                "provisioner_name": PROVISIONER,
                "config": {"workflow": wf_id, "task": task},
            },
        },
    )


def _track_principal(app: OsmoApp) -> None:
    """Have the server's identity provider record each request's principal."""
    idp = app.server.identity_provider
    if getattr(idp, "_osmo_tracked", False):
        return
    get_user = idp.get_user

    async def tracked(handler: Any) -> Any:
        user = get_user(handler)
        if inspect.isawaitable(user):
            user = await user
        if user is not None:
            admins = app.service.config.admin_users if app.service else set()
            CURRENT_PRINCIPAL.set(principal_of(user, idp, admins))
        return user

    # the server's own provider, whatever its class: wrapped in place, and marked so once only
    idp.get_user = tracked  # type: ignore[method-assign]
    idp._osmo_tracked = True  # type: ignore[attr-defined]


class OsmoKernelSpecManager(KernelSpecManager):
    """The server's kernel specs, plus one per running task of the caller."""

    inner = Instance(KernelSpecManager, help="the server's own kernel spec manager")
    osmo_app: Any = None

    def _tasks(self) -> list[tuple[str, str]]:
        """The running tasks the caller may reach: the service's answer in client mode."""
        upstream = getattr(self.osmo_app, "upstream", None)
        if upstream is not None:
            return upstream.running_tasks()  # type: ignore[no-any-return]
        svc = started(self.osmo_app)
        return [] if svc is None else running_tasks(svc, current_principal(self.osmo_app))

    def _ours(self) -> dict[str, tuple[str, str]]:
        try:
            return {spec_name(w, t): (w, t) for w, t in self._tasks()}
        except OsmoError as e:  # the server's own kernels stay listed
            self.log.warning("osmo: no task kernel specs: %s", e)
            return {}

    def _server_specs_hidden(self) -> bool:
        """A user may start no kernel on the server itself under `OsmoAuthorizer`: the server's
        own specs are not theirs to see either."""
        app = self.osmo_app
        if app is None or not isinstance(app.server.authorizer, OsmoAuthorizer):
            return False
        who = current_principal(app)
        return who is None or not who.is_admin

    def find_kernel_specs(self) -> dict[str, str]:
        found = {} if self._server_specs_hidden() else dict(self.inner.find_kernel_specs())
        found.update({name: _logo_dir() for name in self._ours()})
        return found

    async def get_all_specs(self) -> dict[str, dict[str, Any]]:  # type: ignore[override]
        """Awaited by jupyter_server's kernelspecs API. In client mode the service's list
        comes from a thread: a slow service must not hold this server's loop."""
        specs = {} if self._server_specs_hidden() else dict(self.inner.get_all_specs())
        client_mode = getattr(self.osmo_app, "upstream", None) is not None
        ours = await asyncio.to_thread(self._ours) if client_mode else self._ours()
        for name, (wf, task) in ours.items():
            spec = task_spec(wf, task)
            specs[name] = {"resource_dir": spec.resource_dir, "spec": spec.to_dict()}
        return specs

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if not kernel_name.lower().startswith(PREFIX):
            return self.inner.get_kernel_spec(kernel_name)
        upstream = getattr(self.osmo_app, "upstream", None)
        if upstream is not None:  # the service says who may
            for w, t in self._ours().values():
                if kernel_name.lower() == spec_name(w, t):
                    return task_spec(w, t)
            raise web.HTTPError(
                404,
                f"{kernel_name} is not a running task of yours on the OSMO service at "
                f"{upstream.url}: a task's kernels are for its workflow's owner (and admins)",
                reason="not found",
            )
        svc = started(self.osmo_app)
        if svc is not None:  # any task by name; who may start it is checked at launch
            for wf in svc.list(statuses=["RUNNING"], limit=1000):
                for t in svc.get(wf["id"])["tasks"]:
                    if kernel_name.lower() == spec_name(wf["id"], t["name"]):
                        return task_spec(str(wf["id"]), str(t["name"]))
        raise NoSuchKernel(kernel_name)


class OsmoTaskProvisioner(KernelProvisionerBase):
    """Starts ipykernel inside a running task and tunnels its ports here: through this
    server's own agents, or in client mode (remote.py) as a kernel of the shared service."""

    workflow = Unicode(config=True, help="the workflow id of the task")
    task = Unicode(config=True, help="the task's name")
    kernel: RemoteKernel | ServerKernel | None = None
    _ports: dict[str, int]

    @property
    def has_process(self) -> bool:
        return self.kernel is not None

    def _app(self) -> OsmoApp:
        ksm = getattr(self.parent, "kernel_spec_manager", None)
        app = getattr(ksm, "osmo_app", None)
        if app is None:
            raise web.HTTPError(500, "osmo kernels need the osmo_jupyter server extension")
        # the app from tornado's settings (Any)
        return app  # type: ignore[no-any-return]

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        app = self._app()
        kwargs.pop("cmd", None)
        if app.upstream is not None:  # the service checks who asks when it starts the kernel
            return await super().pre_launch(cmd=list(self.kernel_spec.argv), **kwargs)
        svc = await app.ready()
        who = current_principal(app)
        try:
            if who is None:
                raise Forbidden("cannot tell who asks for this kernel; use the osmo API")
            policy.check_owner(who, svc.store.workflow_owner(self.workflow), self.workflow)
            svc.interactive.placement(self.workflow, self.task)
        except OsmoError as e:
            raise _http(e) from e
        return await super().pre_launch(cmd=list(self.kernel_spec.argv), **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        km = self.parent
        assert km is not None  # a provisioner belongs to its kernel manager
        app = self._app()
        # said at the start: a start that hangs shows in the log (the answer is logged at its end)
        self.log.info("osmo: starting a kernel in %s/%s", self.workflow, self.task)
        try:
            if app.upstream is not None:  # its key is the service's: the manager takes it
                transport = app.upstream.transport()
                self.kernel = await ServerKernel.start(transport, self.workflow, self.task)
            else:
                self.kernel = await RemoteKernel.start(
                    await app.ready(),
                    self.workflow,
                    self.task,
                    km.session.key,
                    km.session.signature_scheme,
                    getattr(self, "_ports", None),
                )
        except OsmoError as e:
            raise _http(e) from e
        self._ports = {ch: t.port for ch, t in self.kernel.tunnels.items()}
        # osmo_core knows no Jupyter type: its dict has the keys KernelConnectionInfo names
        self.connection_info = cast(KernelConnectionInfo, self.kernel.connection_info())
        return self.connection_info

    async def poll(self) -> int | None:
        k = self.kernel
        if k is None:
            return 0
        code = k.poll()
        if code is not None and k.reason and "ended (" in k.reason:
            self._give_up(k.reason)
        return code

    def _give_up(self, reason: str) -> None:
        """The task is gone: no auto-restart (it would fail); the server drops the kernel."""
        km = self.parent
        assert km is not None  # a provisioner belongs to its kernel manager
        if getattr(km, "reason", None) != reason:
            self.log.warning("osmo: kernel %s: %s", self.kernel_id, reason)
            km.reason = reason
        restarter = getattr(km, "_restarter", None)
        if restarter is not None:
            restarter.restart_limit = 0

    async def wait(self) -> int | None:
        return await self.kernel.wait() if self.kernel is not None else 0

    async def send_signal(self, signum: int) -> None:
        if self.kernel is not None:
            try:
                await self.kernel.signal(signum)
            except BackendError as e:  # as for a local process that is gone: nothing to signal
                self.log.warning("osmo: kernel %s: %s", self.kernel_id, e)

    async def shutdown_requested(self, restart: bool = False) -> None:
        """A kernel of the shared service (client mode) is shut down there, by its API: a
        shutdown message through the tunnel would end it behind the service's back, and the
        service would restart it."""
        if isinstance(self.kernel, ServerKernel):
            await self.kernel.kill()

    async def kill(self, restart: bool = False) -> None:
        if self.kernel is not None:
            await self.kernel.kill()

    async def terminate(self, restart: bool = False) -> None:
        if self.kernel is not None:
            with contextlib.suppress(BackendError):
                await self.kernel.signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        k, self.kernel = self.kernel, None
        if k is not None:
            await k.close()

    async def get_provisioner_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await super().get_provisioner_info()
        info.update(workflow=self.workflow, task=self.task)
        return info


def _http(e: OsmoError) -> web.HTTPError:
    """The status and message the osmo API gives for `e`, as jupyter_server's own handlers
    (/api/kernels) answer it: they reply `log_message` unformatted, so the message goes in as
    it is, with no format arguments (tornado >= 6.5 then never formats it)."""
    err = from_osmo_error(e)
    return web.HTTPError(err.status_code, err.message, reason=err.reason)


def _forget_failed_starts(mkm: Any) -> None:
    """jupyter_client (8.x `MultiKernelManager._add_kernel_when_ready`) drops a kernel from
    `_pending_kernels` only when its start succeeds: a failed one (a task without ipykernel:
    409) stays there for good, `shutdown_all` asks the server for it, gets 404 "Kernel does not
    exist", and `ServerApp._stop` never finishes (SIGTERM and SIGINT are ignored after it). So
    a start that fails is forgotten at once."""
    if getattr(mkm, "_osmo_forgets_failed", False):
        return
    start = mkm.start_kernel

    async def start_kernel(*args: Any, **kwargs: Any) -> str:
        try:
            return await start(*args, **kwargs)  # type: ignore[no-any-return]
        except BaseException:
            for kid, pending in list(mkm._pending_kernels.items()):
                if pending.done() and kid not in mkm._kernels:
                    del mkm._pending_kernels[kid]
            raise

    mkm.start_kernel = start_kernel
    mkm._osmo_forgets_failed = True


def install(app: OsmoApp) -> None:
    """Put the osmo kernel specs and provisioner in the server `app` extends."""
    server = app.server
    ksm = server.kernel_spec_manager
    if not isinstance(ksm, OsmoKernelSpecManager):
        ksm = OsmoKernelSpecManager(parent=server, inner=ksm)
        ksm.osmo_app = app
        server.kernel_spec_manager = ksm
    # The kernel manager and the web settings hold their own references (and the settings may
    # be built after this runs: `_start_jupyter_server_extension` calls this again).
    server.kernel_manager.kernel_spec_manager = ksm
    _forget_failed_starts(server.kernel_manager)
    if server.web_app is not None:
        server.web_app.settings["kernel_spec_manager"] = ksm
    _track_principal(app)
    # Registered here as well as in pyproject's entry points: an editable checkout whose
    # installed metadata predates the entry point still finds it.
    factory = KernelProvisionerFactory.instance()
    if PROVISIONER not in factory.provisioners:
        factory.provisioners[PROVISIONER] = importlib.metadata.EntryPoint(
            name=PROVISIONER,
            value=f"{__name__}:OsmoTaskProvisioner",
            group="jupyter_client.kernel_provisioners",
        )
