"""`kind: kubernetes`: each attempt is one pod, followed with the watch API.

Its config: settings.py. The official sync client runs in `asyncio.to_thread` (cluster.py);
one watch stream per backend runs in a thread (watch.py). API calls per task: create pod (+ its
Secret when it has files or credentials, + the workflow's shared objects once,
workflow_objects.py), read its log once at the end, delete it. When an attempt ends its log is
copied into the control plane's data directory first, then the pod (and Secret) is deleted, so
the log stays readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...agent.logfile import read_lines
from ...errors import BackendError, Problem
from ...wire import (
    AttemptState,
    EventSink,
    Exited,
    LaunchInfo,
    LaunchRequest,
    LogLine,
    Lost,
    Node,
    Started,
    StartFailed,
)
from ..base import Backend
from .agent import (
    AGENT_KEY_ANNOTATION,
    PodAgentLink,
    agent_settings,
)
from .cluster import (
    api_client,
    archive_log,
    core,
    create_object,
    delete_attempt,
    key_of,
    list_nodes,
    list_pods,
    log_lines,
)
from .pod_agents import PodAgents
from .pods import (
    LABEL_BACKEND,
    LABEL_MANAGED,
    build_pod,
    host_name,
    label_value,
    pod_name,
    secret_for,
)
from .records import Records
from .settings import check_config
from .watch import PodWatcher, classify, pending_reason
from .workflow_objects import WorkflowObjects

if TYPE_CHECKING:
    from ...config import PoolConfig
    from ...interactive.hub import Interactive

Ending = Exited | StartFailed | Lost
log = logging.getLogger("osmo_core.backends")
CANCEL_SLACK = 10.0  # s past a cancel's grace before the pod of an agent that did not end it goes


class KubernetesBackend(Backend):
    kind = "kubernetes"
    outputs_by_path = False  # each pod has its own disk, gone with the pod

    @classmethod
    def check_config(cls, name: str, spec: dict[str, Any]) -> list[Problem]:
        return check_config(name, spec)

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        super().__init__(name, config)
        self.namespace: str = self.config.get("namespace", "default")
        self.start_timeout = float(self.config.get("start_timeout", 600))
        self.keep_on_failure = bool(self.config.get("keep_on_failure", False))
        self.orphan_grace = float(self.config.get("orphan_grace", 60))
        self.node_refresh = float(self.config.get("node_refresh", 60)) or None
        # The pools on this backend (set by the service, like credentials): platform templates.
        self.pools: dict[str, PoolConfig] = {}
        self.selector = f"{LABEL_MANAGED}=osmo,{LABEL_BACKEND}={label_value(name)}"
        self.log_dir = Path(self.config.get("root", ".")) / "k8s-logs" / label_value(name)
        self.records = Records(self.log_dir)  # what stays of attempts whose pods are gone
        self.connected = False
        self._nodes: list[Node] = []  # as last listed: offline copies while unreachable
        self.disconnect_reason = ""
        self._api: Any = None
        self._sink: EventSink | None = None
        self._watcher: PodWatcher | None = None
        self._known: dict[str, str] = {}  # key -> "" (pending), running, ending, done
        self._why: dict[str, str] = {}  # key -> why its pod is still pending
        self._tracked_at: dict[str, float] = {}  # key -> monotonic time it was first tracked
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.shared = WorkflowObjects(name, self.namespace, self.config)  # Services, PodGroups
        self._no_secret: set[str] = set()  # keys launched here without a Secret (no delete call)
        self._bg: set[asyncio.Task[Any]] = set()
        # The in-pod agent (agent.py): None without `agent_image`.
        self.agent = agent_settings(self.config)
        self.supports_hold = self.agent is not None
        self.agent_prefix = f"{name}/pod/"  # the hub accepts these agent ids only when expected
        self.agents = PodAgents(
            name, self.agent_prefix, self.agent, self.log_dir, self.start_timeout
        )

    # --- connection -------------------------------------------------------------------------

    @property
    def api(self) -> Any:
        return core(self._api)

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._api = await asyncio.to_thread(api_client, self.config)
        self._watcher = PodWatcher(
            self.api,
            self.namespace,
            self.selector,
            asyncio.get_running_loop(),
            self._on_pod,
            self._on_connected,
            stream_seconds=int(self.config.get("watch_seconds", 300)),
        )
        self._watcher.start()
        self._spawn(self._reap_orphans_later())

    async def stop(self) -> None:
        for key in list(self.agents.links):
            await self.agents.drop(key, shutdown=False)  # the agents wait for the next start
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)
            self._watcher = None
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for t in list(self._bg):
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _on_connected(self, up: bool, why: str) -> None:
        self.connected, self.disconnect_reason = up, why

    async def nodes(self, *, runtimes: bool = True) -> list[Node]:
        client_ = (
            self._api if self._api is not None else await asyncio.to_thread(api_client, self.config)
        )
        try:
            self._nodes = await list_nodes(core(client_), self.config)
        except Exception as exc:  # an unreachable cluster must not stop the control plane
            self._on_connected(False, f"listing nodes: {type(exc).__name__}: {exc}")
            return [dataclasses.replace(n, online=False) for n in self._nodes]
        return self._nodes

    # --- launch -------------------------------------------------------------------------------

    def platform_config(self, req: LaunchRequest) -> dict[str, Any]:
        pool = self.pools.get(req.pool)
        plat = pool.platforms.get(req.platform) if pool else None
        return dict(plat.extra) if plat else {}

    def manifest(self, req: LaunchRequest, agent_key: str | None = None) -> dict[str, Any]:
        return build_pod(
            req,
            self.namespace,
            self.config,
            self.platform_config(req),
            self.name,
            self.credentials_of(req),
            None if self.agent is None else {**self.agent, "key": agent_key or ""},
        )

    def host_of(self, key: str, node: str) -> str:
        return host_name(key)

    # --- the in-pod agent ---------------------------------------------------------------------

    def set_dial_home(self, host: str, port: int, client_key: str) -> None:
        self.agents.set_dial_home(self.config, host, port, client_key)

    def attach_hub(self, hub: Interactive) -> None:
        self.agents.hub = hub

    def agent_of(self, key: str, node: str) -> str | None:
        """The agent that runs attempt `key`: its pod's (interactive access)."""
        return self.agents.agent_id(key) if self.agent is not None else None

    async def _drive(self, req: LaunchRequest, link: PodAgentLink) -> None:
        """Once the pod's agent has dialled in: launch the attempt there."""
        key = req.key
        await link.start(lambda ev: self._from_agent(key, ev))
        await link.wait_connected()
        try:  # the pod is the image: the agent runs the command as it is, in the container
            await link.launch(dataclasses.replace(req, image=None))
        except BackendError as e:
            self._end(key, StartFailed(key, f"the pod's agent: {e}", time.time()))

    def _from_agent(self, key: str, ev: Any) -> None:
        if isinstance(ev, Started):
            self._started(key, ev)
        elif isinstance(ev, (Exited, StartFailed, Lost)):
            self._end(key, ev)
        elif self._known.get(key) in ("", "running") and self._sink is not None:
            if isinstance(ev, LogLine):
                self.agents.archive(key, ev)
            self._sink(ev)  # log lines, transfers, holds

    async def release(self, key: str) -> None:
        link = self.agents.links.get(key)
        if link is None:
            raise BackendError(f"attempt {key} has no agent connected here")
        await link.release(key)

    # --- launch (continued) -----------------------------------------------------------------

    async def launch(self, req: LaunchRequest) -> LaunchInfo:
        from kubernetes.client.exceptions import ApiException

        unsupported = [w for w in ("inputs", "outputs", "checkpoints") if getattr(req, w)]
        if unsupported and self.agent is None:  # refuse rather than run without its data
            raise NotImplementedError(
                f"kubernetes backend {self.name!r}: task {what_of(req.key)} uses "
                f"{', '.join(unsupported)}, which need the in-pod agent: set `agent_image` on "
                "the backend"
            )
        agent_data, public = (
            self.agents.secret(req, self.credentials_of(req)) if self.agent else (None, None)
        )
        body = self.manifest(req, public)  # first: a bad template fails before anything exists
        api = self.api
        await self.shared.ensure(self._api, req)
        secret = secret_for(req, self.namespace, self.name, self.credentials_of(req), agent_data)
        if secret is not None:
            await create_object(api.create_namespaced_secret, self.namespace, secret)
        else:
            self._no_secret.add(req.key)
        link = self.agents.link(req.key, public) if public else None
        try:
            await asyncio.to_thread(api.create_namespaced_pod, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:  # launched before (a lost answer): its pod has its own key
                self._track(req.key)
                if link is not None:
                    pod = await asyncio.to_thread(
                        api.read_namespaced_pod, pod_name(req.key), self.namespace
                    )
                    theirs = (pod.metadata.annotations or {}).get(AGENT_KEY_ANNOTATION, "")
                    self.agents.expect(req.key, theirs)
                    self._spawn(self._drive(req, link))  # the agent's launch is idempotent
                return self.records.info(req.key, known=True)
            if link is not None:
                await self.agents.drop(req.key, shutdown=False)
            raise
        self._track(req.key)
        if link is not None:
            self._spawn(self._drive(req, link))
        return self.records.info(req.key)

    def _track(self, key: str) -> None:
        if key in self._known:
            return
        self._known[key] = ""
        self._tracked_at[key] = time.monotonic()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self.start_timeout, self._start_timed_out, key)

    def _start_timed_out(self, key: str) -> None:
        self._timers.pop(key, None)
        if self._known.get(key) == "":
            why = self._why.get(key, "Pending")
            msg = f"pod not running after {self.start_timeout:g}s ({why})"
            self._end(key, StartFailed(key, msg, time.time(), reason="start_timeout"))

    # --- following pods -------------------------------------------------------------------------

    def _on_pod(self, kind: str, obj: Any) -> None:
        if kind == "SYNC":  # a full list: pods that vanished while we were not watching
            asked, pods = obj
            listed = {key_of(p) for p in pods}
            for pod in pods:
                self._on_pod("ADDED", pod)
            for known, phase in list(self._known.items()):
                # a pod created while the list was being answered may be missing from it
                fresh = self._tracked_at.get(known, 0.0) >= asked
                if phase in ("", "running") and known not in listed and not fresh:
                    self._end(known, Lost(known, "pod deleted", time.time()))
            return
        key = key_of(obj)
        if key not in self._known:
            return
        if kind == "DELETED":
            if self._known[key] in ("", "running"):
                self._end(key, Lost(key, "pod deleted", time.time()))
            return
        ev = classify(key, obj)
        if ev is None:
            self._why[key] = pending_reason(obj)
        elif isinstance(ev, Started):
            if (
                key in self.agents.links
            ):  # the container runs the agent; the task starts when it says
                host, port, _ = self.agents.dial_home or ("?", 0, "")
                self._why[key] = f"its agent has not dialled home to {host}:{port}"
                return
            self._started(key, ev)
        else:
            self._end(key, ev)

    def _started(self, key: str, ev: Started | None = None) -> None:
        """A pending attempt runs (its container, or its agent's command): no start timeout
        from now; `ev` goes to the engine (None: it already knows, e.g. after a restart)."""
        if self._known.get(key) != "":
            return
        self._known[key] = "running"
        self._cancel_timer(key)
        if ev is not None and self._sink is not None:
            self._sink(ev)

    def _cancel_timer(self, key: str) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _end(self, key: str, ev: Ending) -> None:
        """An attempt ended: archive its log, report the end, then delete its objects."""
        if self._known.get(key) not in ("", "running"):
            return
        was = self._known[key]
        self._known[key] = "ending"
        self._cancel_timer(key)
        self._why.pop(key, None)
        self._spawn(self._finish(key, ev, started=was == "running"))

    async def _finish(self, key: str, ev: Ending, started: bool) -> None:
        if key in self.agents.links:  # its log is archived line by line; the agent may go now
            await self.agents.drop(key, shutdown=True)
        else:
            with contextlib.suppress(Exception):
                await self._archive(key)
        await self.records.write_end(key, ev)
        if self._sink is not None:
            if not started and isinstance(ev, Exited):
                self._sink(Started(key, ts=ev.ts))
            self._sink(ev)
        self._known[key] = "done"
        failed = not isinstance(ev, Exited) or ev.exit_code != 0
        if not (self.keep_on_failure and failed):
            await self._delete(key)
        await self._drop_service_if_idle(key.split("/")[0])

    async def _archive(self, key: str) -> None:
        await archive_log(self.api, self.namespace, key, self.records.pod_log(key))

    async def _delete(self, key: str, grace: int | None = None) -> None:
        secret = key not in self._no_secret
        self._no_secret.discard(key)
        await delete_attempt(self.api, self.namespace, key, grace, secret)

    async def _drop_service_if_idle(self, wf: str) -> None:
        if any(k.startswith(f"{wf}/") and p != "done" for k, p in self._known.items()):
            return
        await self.shared.drop(self._api, wf)

    async def cancel(self, key: str, grace: float = 5.0) -> None:
        link = self.agents.links.get(key)
        if self._known.get(key) == "running" and link is not None and link.connected_now:
            # Through the agent, as on a host: a running command gets SIGTERM then SIGKILL, a
            # held one keeps its exit code; its end arrives as usual and removes the pod.
            with contextlib.suppress(BackendError):
                await link.cancel(key, grace)
                self._spawn(self._delete_unless_ended(key, grace + CANCEL_SLACK))
                return
        await self._cancel_pod(key, grace)

    async def _cancel_pod(self, key: str, grace: float) -> None:
        """Delete the attempt's pod (its agent, if any, stops the command on the way)."""
        if self._known.get(key) in ("", "running"):
            self._known[key] = "ending"
            self._cancel_timer(key)
            if key in self.agents.links:  # deleting the pod stops the agent and its task
                await self.agents.drop(key, shutdown=False)
            else:
                with contextlib.suppress(Exception):
                    await self._archive(key)
            self._known[key] = "done"
            await self._delete(key, int(grace))
            if self._sink is not None:
                self._sink(Exited(key, 143, time.time(), signal=15, message="pod deleted"))
            await self._drop_service_if_idle(key.split("/")[0])
        else:
            await self._delete(key, int(grace))

    async def _delete_unless_ended(self, key: str, after: float) -> None:
        """An agent that took a cancel but did not end its attempt: delete the pod."""
        await asyncio.sleep(after)
        if self._known.get(key) == "running":
            log.warning(
                "attempt %s did not end %.0f s after its cancel: deleting its pod", key, after
            )
            await self._cancel_pod(key, 0)

    # --- restart, status and orphans ---------------------------------------------------------

    async def _pods(self) -> list[Any]:
        return await list_pods(self.api, self.namespace, self.selector, self.name)

    async def running(self) -> set[str] | None:
        """Keys of this backend's pods that have not ended, in one list call (the watch may
        have missed a deletion: the engine's reconciliation asks about the rest); None while
        the API server cannot be reached (the watch relists once it can)."""
        try:
            pods = await self._pods()
        except Exception as e:  # ApiException, connection refused, timeouts
            log.info("kubernetes %s: cannot list pods for reconciliation: %s", self.name, e)
            return None
        ended = ("Succeeded", "Failed")
        return {k for p in pods if (k := key_of(p)) and (p.status and p.status.phase) not in ended}

    async def status(self, keys: list[str]) -> dict[str, AttemptState]:
        by_key = {key_of(p): p for p in await self._pods()}
        out = {}
        for key in keys:
            pod = by_key.get(key)
            if pod is None:
                out[key] = self.records.ended_state(key)
                continue
            self._track(key)
            ev = classify(key, pod)
            if isinstance(ev, Exited):
                out[key] = AttemptState(
                    key, "exited", exit_code=ev.exit_code, info=self.records.info(key)
                )
            elif isinstance(ev, StartFailed):
                out[key] = AttemptState(key, "failed_start", message=ev.message)
            elif isinstance(ev, Lost):
                out[key] = AttemptState(key, "lost", message=ev.message)
            else:
                agent_key = (pod.metadata.annotations or {}).get(AGENT_KEY_ANNOTATION)
                if agent_key and self.agent is not None and self.agents.hub is not None:
                    self._adopt(key, agent_key)
                elif isinstance(ev, Started):
                    self._started(key)
                out[key] = AttemptState(key, "running", info=self.records.info(key))
                continue
            self._end(key, ev)  # ended while we were away: archive and clean up
        return out

    def _adopt(self, key: str, public: str) -> None:
        """An agent pod of the previous control plane: follow its attempt through its agent,
        from the last log line archived here."""
        if key in self.agents.links:
            return
        link = self.agents.link(key, public)
        link.follow(key, len(read_lines(self.agents.log_path(key), key)))
        self._spawn(self._reclaim(key, link))

    async def _reclaim(self, key: str, link: PodAgentLink) -> None:
        """Until its agent answers, the start timeout runs; an agent that never got the
        attempt (the restart came between the pod and the launch) cannot run it: lost, so the
        engine can place it again."""
        await link.start(lambda ev: self._from_agent(key, ev))
        await link.wait_connected()
        try:
            state = (await link.status([key]))[key].state
        except BackendError:
            return  # stopped meanwhile, or the link is down: the start timeout decides
        if state == "unknown":
            msg = "the control plane restarted before the pod's agent was given its task"
            self._end(key, Lost(key, msg, time.time()))
        else:
            self._started(key)

    async def _reap_orphans_later(self) -> None:
        await asyncio.sleep(self.orphan_grace)
        with contextlib.suppress(Exception):
            await self.reap_orphans()

    async def reap_orphans(self) -> list[str]:
        """Delete this backend's pods (and Secrets, Services) that no attempt claimed since
        start: left by a control plane that stopped before cleaning up. Logs are archived
        first. Returns the pod names removed."""
        from kubernetes.client.exceptions import ApiException

        removed = []
        for pod in await self._pods():
            key = key_of(pod)
            if key is None or key in self._known:
                continue
            with contextlib.suppress(Exception):
                await self._archive(key)
            await self._delete(key, 0)
            removed.append(pod.metadata.name)
        live = {k.split("/")[0] for k, p in self._known.items() if p != "done"}
        with contextlib.suppress(ApiException):
            await self.shared.reap(self._api, self.selector, live)
        return removed

    async def read_log(self, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
        if self.agents.log_path(key).exists():  # an agent pod's: as delivered, streams kept
            return await asyncio.to_thread(read_lines, self.agents.log_path(key), key, start, limit)
        archived = self.records.pod_log(key)
        return await log_lines(self.api, self.namespace, key, archived, start, limit)

    async def forget(self, key: str) -> None:
        if self._known.get(key) == "done":
            self._known.pop(key, None)
            self._tracked_at.pop(key, None)


def what_of(key: str) -> str:
    return repr(key.split("/")[1]) if key.count("/") == 2 else repr(key)
