"""The agents of one Kubernetes backend's pods, as its control plane sees them: where they dial
home, the host key the hub expects of each, the link to each, and their logs (archived here as
they arrive). What a pod carries for its agent, and the link itself, are in agent.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ...agent.logfile import format_line
from ...errors import BackendError
from ...wire import LaunchRequest, LogLine
from .agent import SOCKET, PodAgentLink, agent_secret_data, credentials_for
from .pods import pod_name
from .settings import agent_dial

if TYPE_CHECKING:
    from ...interactive.hub import Interactive

log = logging.getLogger("osmo_core.backends")


class PodAgents:
    def __init__(
        self, backend: str, prefix: str, settings: dict[str, Any] | None, log_dir: Path, wait: float
    ):
        self.backend = backend
        self.prefix = prefix  # of its agents' ids (Backend.agent_prefix)
        self.settings = settings  # agent_settings(config); None: pods run no agent
        self.log_dir = log_dir
        self.wait = wait  # how long a pod may take to be scheduled, pulled and dial in
        self.hub: Interactive | None = None  # the agents' connections (attach_hub)
        self.dial_home: tuple[str, int, str] | None = None
        self.links: dict[str, PodAgentLink] = {}  # key -> link to its pod's agent
        self._logs: dict[str, BinaryIO] = {}  # key -> open archive of its log

    def agent_id(self, key: str) -> str:
        return f"{self.prefix}{pod_name(key)}"

    def set_dial_home(self, config: dict[str, Any], host: str, port: int, client_key: str) -> None:
        """Where pods' agents dial (the hub's listener), unless `agent_dial` says otherwise:
        the address pods reach the control plane at."""
        dial = agent_dial(config)
        if dial:
            host, port = dial
        elif self.settings is not None and host.startswith("127."):
            log.warning(
                "kubernetes backend %s: pods' agents will dial %s:%d, which a cluster's pods "
                "cannot reach; set agent_dial (and interactive_host) to an address they can",
                self.backend,
                host,
                port,
            )
        self.dial_home = (host, port, client_key)

    def secret(
        self, req: LaunchRequest, credentials: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, str], str]:
        """(the Secret's data for the pod's agent, the agent's public host key)."""
        import asyncssh

        if self.dial_home is None or self.hub is None:
            raise BackendError(
                f"kubernetes backend {self.backend!r}: the in-pod agent needs the control "
                "plane's interactive listener (osmo_core.interactive), which is not started"
            )
        host, port, client_key = self.dial_home
        key = asyncssh.generate_private_key("ssh-ed25519")
        public = " ".join(key.export_public_key("openssh").decode().split()[:2])
        dialhome = {"host": host, "port": port, "agent_id": self.agent_id(req.key)}
        data = agent_secret_data(
            {**dialhome, "client_key": client_key},
            key.export_private_key(),
            credentials_for(req, credentials),
        )
        return data, public

    def expect(self, key: str, public: str) -> None:
        """The hub takes the agent of `key`'s pod only with this host key."""
        assert self.hub is not None  # secret() refuses to make a pod's agent without it
        self.hub.expect(self.agent_id(key), public)

    def link(self, key: str, public: str) -> PodAgentLink:
        assert self.settings is not None  # only pods with an agent have a public key
        self.expect(key, public)
        assert self.hub is not None  # as expect() found it
        link = self.links.get(key)
        if link is None:
            socket = f"{self.settings['dir']}/{SOCKET}"
            link = self.links[key] = PodAgentLink(self.hub, self.agent_id(key), socket, self.wait)
        return link

    def archive(self, key: str, line: LogLine) -> None:
        """Agent pods' logs are kept as they arrive (durable log format): complete up to
        what was delivered whatever happens to the pod."""
        f = self._logs.get(key)
        if f is None:
            path = self.log_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            f = self._logs[key] = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in drop
        f.write(format_line(line.ts, line.stream, line.text))

    def log_path(self, key: str) -> Path:
        return self.log_dir / f"{pod_name(key)}.agent.log"

    async def drop(self, key: str, shutdown: bool) -> None:
        """Close the link to `key`'s agent (with `shutdown`, letting it exit) and its log."""
        link = self.links.pop(key, None)
        f = self._logs.pop(key, None)
        if f is not None:
            f.close()
        if link is not None:
            await link.stop(shutdown=shutdown and link.connected_now)
            if self.hub is not None:
                self.hub.forget(link.agent_id)
