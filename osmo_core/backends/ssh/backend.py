"""The SSH backend: machines reachable over SSH (workstations, NVIDIA Jetson devices) as nodes.

Each host runs the same agent as the local backend (provisioned by host.py); this backend
is its client over one asyncssh connection per host, which carries everything: commands,
SFTP, the agent's JSON-lines protocol (a direct-streamlocal channel to the agent's Unix
socket) and, for interactive access, a reverse port forward the agent dials home through (so
a host needs no route back to the control plane).

Data between hosts goes through the control plane: an attempt's log is mirrored here as its
lines arrive, and when it succeeds its output folder (when not empty) is copied here too, under
ROOT/ssh/<backend>/<host>/runs/<key>/, before its end is reported. That copy is the attempt's
`output`, so a downstream task on the local backend reads it as is, and one on another host gets
it pushed over SFTP before it starts; one on the same host reads the original in place. Large
data should go through storage URLs or datasets, which the agent moves directly.

A host that drops out (SSH down, agent gone) is marked offline at once (no new tasks go there)
and reconnected with backoff; after `lost_grace` seconds its watched attempts are reported
`Lost` (the engine makes them FAILED_BACKEND_ERROR, rescheduled by default). A new agent on a
live host reports the old one's attempts lost itself (its recovery), which ends the same way.

Config (OsmoConfig.backends["name"]):
    kind: ssh
    hosts: ["gpu1.lab", ...] or {"jetson-1": {"arch": "aarch64", "port": 2222, ...}, ...}
      per host: port, username, python, dir, arch/cpus/memory/gpus (override what is probed)
    known_hosts, ssh_config, client_keys, username, python ("python3"), dir ("~/.osmo-agent"),
    connect_timeout (10), keepalive_interval (5), lost_grace (30), recheck_max (30),
    idle_timeout (600), wheel (a wheel to install instead of one built here), install_deps
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import asyncssh

from ...agent.logfile import count_lines, read_lines
from ...agent.workdir import LOG, OUTPUT, attempt_dir
from ...errors import BackendError, Problem
from ...wire import AttemptState, EventSink, LaunchInfo, LaunchRequest, LogLine, Node
from ..base import Backend
from . import host as ssh_host
from .host import HostConfig
from .link import HostLink

log = logging.getLogger("osmo_core.backends.ssh")

HOST_KEYS = {"port", "username", "python", "dir", "arch", "cpus", "memory", "gpus"}
BACKEND_KEYS = {
    "kind",
    "root",
    "hosts",
    "known_hosts",
    "ssh_config",
    "client_keys",
    "username",
    "python",
    "dir",
    "connect_timeout",
    "keepalive_interval",
    "lost_grace",
    "recheck_max",
    "idle_timeout",
    "wheel",
    "install_deps",
}


class SSHBackend(Backend):
    kind = "ssh"
    supports_hold = True  # the same agent as the local backend holds tasks
    shares_login_user = True  # tasks run as the SSH login user

    @classmethod
    def check_config(cls, name: str, spec: dict[str, Any]) -> list[Problem]:
        where = f"OsmoConfig.backends.{name}"
        problems = Problem.unknown_keys(spec, BACKEND_KEYS, where)
        hosts = spec.get("hosts")
        if not hosts or not isinstance(hosts, (list, dict)):
            problems.append(
                Problem(
                    f"expected a non-empty list or dict of hosts, got {hosts!r}",
                    field=f"{where}.hosts",
                    hint="e.g. ['gpu1.lab'] or {'jetson-1': {'arch': 'aarch64'}}",
                )
            )
        elif isinstance(hosts, dict):
            for alias, opts in hosts.items():
                given = (opts or {}) if isinstance(opts, dict) else {"(not a dict)"}
                problems += Problem.unknown_keys(given, HOST_KEYS, f"{where}.hosts.{alias}")
        return problems

    @classmethod
    def host_names(cls, spec: dict[str, Any]) -> list[str]:
        hosts = spec.get("hosts") or []
        return list(hosts) if isinstance(hosts, (list, dict)) else []

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        super().__init__(name, config)
        self.root = Path(self.config.get("root") or ".").expanduser().resolve()
        self.lost_grace = float(self.config.get("lost_grace", 30))
        self.recheck_max = float(self.config.get("recheck_max", 30))
        self.wheel: str | None = self.config.get("wheel")
        self.dial_home: tuple[str, int, str] | None = None  # (host, port, client key)
        connect = ssh_host.connect_options(self.config)
        raw = self.config["hosts"]
        entries = raw if isinstance(raw, dict) else dict.fromkeys(raw)
        self.hosts: dict[str, HostLink] = {}
        for alias, opts in entries.items():
            opts = opts or {}
            cfg = HostConfig(
                alias=str(alias),
                python=opts.get("python", self.config.get("python", "python3")),
                dir=opts.get("dir", self.config.get("dir", "~/.osmo-agent")),
                port=opts.get("port"),
                username=opts.get("username", self.config.get("username")),
                overrides={k: opts[k] for k in ("arch", "cpus", "memory", "gpus") if k in opts},
                connect=connect,
                install_deps=bool(self.config.get("install_deps", False)),
                idle_timeout=float(self.config.get("idle_timeout", 600)),
            )
            self.hosts[cfg.alias] = HostLink(self, cfg)
        self._where: dict[str, str] = {}  # attempt key -> host alias

    # --- Backend -----------------------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        # In parallel: an unreachable host must not hold up the others (it is retried).
        await asyncio.gather(*(h.start(sink) for h in self.hosts.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(h.stop() for h in self.hosts.values()))

    async def nodes(self, *, runtimes: bool = True) -> list[Node]:
        return [h.node for h in self.hosts.values()]  # the same objects: online is kept live

    @functools.cached_property
    def cp_id(self) -> str:
        """This control plane's id (its agents' root on each host), made at first connection."""
        return ssh_host.control_plane_id(self.root)

    def host_status(self) -> dict[str, dict[str, Any]]:
        """Per host: online, address, the last error (why it is offline)."""
        return {
            a: {"online": h.node.online, "address": h.address, "error": h.error}
            for a, h in self.hosts.items()
        }

    def host_of(self, key: str, node: str) -> str:
        """What {{host:TASK}} becomes for a task on `node`: the address we reached it at."""
        h = self.hosts.get(node)
        return h.address if h is not None else node

    async def launch(self, req: LaunchRequest) -> LaunchInfo:
        h = self._host(req.node)
        if not h.node.online:
            raise BackendError(f"host {h.cfg.alias} is offline: {h.error}")
        self._where[req.key] = h.cfg.alias
        inputs = [await h.stage_input(req.key, i) for i in req.inputs]
        info = await h.launch(dataclasses.replace(req, inputs=inputs))
        mirror = attempt_dir(h.mirror, req.key)
        return dataclasses.replace(info, output=str(mirror / OUTPUT))

    async def cancel(self, key: str, grace: float = 5.0) -> None:
        for h in self._hosts_of(key):
            await h.cancel(key, grace)

    async def release(self, key: str) -> None:
        for h in self._hosts_of(key):
            await h.release(key)

    def _hosts_of(self, key: str) -> list[HostLink]:
        """Where to send a cancel or release: the attempt's host even while its link is down
        (the request goes once it is back, within the link's CALL_TIMEOUT: one dropped during
        an sshd restart would leave the task running there), else every connected host."""
        alias = self._where.get(key)
        if alias:
            return [self.hosts[alias]]
        return [h for h in self.hosts.values() if h.connected]

    async def status(self, keys: list[str]) -> dict[str, AttemptState]:
        out = {k: AttemptState(k, "unknown") for k in keys}
        for h in self.hosts.values():
            if not h.connected:
                for k in keys:
                    if self._where.get(k) == h.cfg.alias:
                        out[k] = AttemptState(k, "lost", message=f"host {h.cfg.alias} is offline")
                continue
            for k, st in (await h.status(keys)).items():
                if st.state == "unknown":
                    continue
                out[k] = st
                self._where[k] = h.cfg.alias
                ended_here = attempt_dir(h.mirror, k) / OUTPUT
                if st.state == "exited" and st.exit_code == 0 and not ended_here.exists():
                    try:  # it ended while nobody watched: its outputs were never fetched
                        await h.fetch(k, outputs=True, whole_log=True)
                    except (asyncssh.Error, OSError, BackendError) as e:
                        out[k] = AttemptState(k, "lost", message=f"fetching its outputs: {e}")
        return out

    async def running(self) -> set[str] | None:
        """What each host's agent runs (and what its link is fetching), plus every attempt of
        a host whose link is down: that link reports them lost after lost_grace or resyncs
        them once back, so the reconciliation must not end them before."""
        answers = await asyncio.gather(*(h.running() for h in self.hosts.values()))
        keys: set[str] = set()
        for h, got in zip(self.hosts.values(), answers, strict=True):
            if got is None:
                got = {k for k, alias in self._where.items() if alias == h.cfg.alias}
            keys |= got
        return keys

    async def read_log(self, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
        alias = self._where.get(key)
        h = self.hosts.get(alias) if alias else None
        if h is not None and h.connected and h.watching(key):
            return await h.read_log(key, start, limit)
        for other in [h] if h else self.hosts.values():  # ended: its log was copied here
            mirrored = attempt_dir(other.mirror, key) / LOG
            if mirrored.exists():
                return await asyncio.to_thread(read_lines, mirrored, key, start, limit)
        return await h.read_log(key, start, limit) if h else []

    async def count_log(self, key: str) -> int:
        alias = self._where.get(key)
        h = self.hosts.get(alias) if alias else None
        if h is None or not (h.connected and h.watching(key)):
            for other in [h] if h else self.hosts.values():  # ended: counted here, in C
                mirrored = attempt_dir(other.mirror, key) / LOG
                if mirrored.exists():
                    return await asyncio.to_thread(count_lines, mirrored)
        return await super().count_log(key)

    async def forget(self, key: str) -> None:
        alias = self._where.pop(key, None)
        if alias:
            await self.hosts[alias].forget(key)

    # --- interactive access (osmo_core.interactive) ------------------------------------------

    def set_dial_home(self, host: str, port: int, client_key: str) -> None:
        """Where agents dial home; each host's agent reaches it through a reverse forward."""
        self.dial_home = (host, port, client_key)
        for h in self.hosts.values():
            if h.connected:
                h.schedule(h.write_dial_home())

    def agent_id_of(self, node: str) -> str:
        return f"{self.name}@{node}"

    def agent_of(self, key: str, node: str) -> str | None:
        """The agent that runs attempt `key` (interactive access): its host's."""
        return self.agent_id_of(node) if node else None

    async def shutdown_agents(self) -> None:
        """Stop every host's agent (and its tasks); for tests and cleanup."""
        await asyncio.gather(*(h.shutdown() for h in self.hosts.values() if h.connected))
        await self.stop()

    def _host(self, node: str | None) -> HostLink:
        if node not in self.hosts:
            raise BackendError(f"ssh backend {self.name!r} has no host {node!r}")
        return self.hosts[node]
