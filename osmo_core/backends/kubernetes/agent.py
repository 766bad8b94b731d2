"""The in-pod agent of the Kubernetes backend: what a pod carries for it, and the link to it.

With `agent_image` set on a backend, every pod it creates runs the agent (osmo_core.agent.pod):

- an init container `osmo-agent-init` (the agent image) copies the agent's Python tree into the
  `osmo-agent` emptyDir (`agent_init_command`, default `cp -a /opt/osmo-agent/. DIR/agent/`);
- the task container (the task's image, resources, GPUs) runs `agent_command` (default
  `DIR/agent/bin/python3 -m osmo_core.agent.pod --dir DIR`) instead of the task's command;
- the attempt's Secret, mounted at DIR/secret, holds dialhome.json (where the agent dials: the
  backend's `agent_dial` "host:port", default the control plane's interactive address), the
  SSH host key the control plane made for this pod (it expects exactly that key from it), and
  the credentials the task names; DIR/run (emptyDir) is the agent's root.

The agent dials home; the control plane opens the agent protocol on that connection (a Unix
forward to the agent's socket) and launches the attempt there exactly as on an SSH host:
inputs are staged in the pod, logs stream live, outputs and checkpoints are uploaded from the
pod, holds keep the pod, and exec, terminals, port-forward and kernels reach the task container.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import TYPE_CHECKING, Any

from ...wire import CheckpointSpec, InputSpec, LaunchRequest, LogLine, OutputSpec
from ..agentlink import AgentLink

if TYPE_CHECKING:
    from asyncssh import SSHReader, SSHWriter

    from ...interactive.hub import Interactive

AGENT_DIR = "/osmo"
AGENT_KEY_ANNOTATION = "osmo/agent-key"  # public host key: re-expected after a restart
SOCKET = "run/agent.sock"


def agent_settings(config: dict[str, Any]) -> dict[str, Any] | None:
    """The backend's in-pod agent settings; None without `agent_image` (no agent)."""
    image = config.get("agent_image")
    if not image:
        return None
    d = str(config.get("agent_dir") or AGENT_DIR).rstrip("/")
    return {
        "dir": d,
        "image": image,
        "init_command": list(
            config.get("agent_init_command") or ["sh", "-c", f"cp -a /opt/osmo-agent/. {d}/agent/"]
        ),
        "command": list(
            config.get("agent_command")
            or [f"{d}/agent/bin/python3", "-m", "osmo_core.agent.pod", "--dir", d]
        ),
        "linger": float(config.get("agent_linger", 600)),
    }


def add_agent(spec: dict[str, Any], agent: dict[str, Any], secret: str) -> dict[str, Any]:
    """The pod spec with the agent: its init container, volumes and the task container's
    command (before pod templates merge, so a platform can adjust them)."""
    d = agent["dir"]
    tree = {"name": "osmo-agent", "mountPath": f"{d}/agent"}
    task = spec["containers"][0]
    task["command"] = [*agent["command"], "--linger", f"{agent['linger']:g}"]
    task["args"] = []
    task["volumeMounts"] = [
        {**tree, "readOnly": True},
        {"name": "osmo-run", "mountPath": f"{d}/run"},
        {"name": "osmo-agent-secret", "mountPath": f"{d}/secret", "readOnly": True},
    ]
    spec["initContainers"] = [
        {
            "name": "osmo-agent-init",
            "image": agent["image"],
            "command": agent["init_command"],
            "volumeMounts": [tree],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        }
    ]
    spec["volumes"] = [
        {"name": "osmo-agent", "emptyDir": {}},
        {"name": "osmo-run", "emptyDir": {}},
        {"name": "osmo-agent-secret", "secret": {"secretName": secret, "defaultMode": 0o400}},
    ]
    return spec


def credentials_for(req: LaunchRequest, secrets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Only the credentials the task names (its `credentials:`, its data's `credential`)."""
    names = set(req.credentials)
    moved: list[InputSpec | OutputSpec | CheckpointSpec] = [
        *req.inputs,
        *req.outputs,
        *req.checkpoints,
    ]
    names |= {x.credential for x in moved if x.credential}
    return {n: secrets[n] for n in sorted(names) if n in secrets}


def agent_secret_data(
    dialhome: dict[str, Any], host_key: bytes, creds: dict[str, Any]
) -> dict[str, str]:
    """The Secret's data for the agent (base64 values)."""
    data = {
        "dialhome.json": json.dumps(dialhome).encode(),
        "ssh_host_key": host_key,
    }
    if creds:
        data["credentials.json"] = json.dumps(creds).encode()
    return {k: base64.b64encode(v).decode() for k, v in data.items()}


class PodAgentLink(AgentLink):
    """The agent protocol to one pod's agent, over its dial-home SSH connection."""

    def __init__(self, hub: Interactive, agent_id: str, socket: str, wait: float):
        super().__init__(f"pod {agent_id}")
        self.hub, self.agent_id, self.socket = hub, agent_id, socket
        self.start_timeout = wait  # a pod may take this long to be scheduled and pull images

    async def _open(self) -> tuple[SSHReader[bytes], SSHWriter[bytes]]:
        return await self.hub.open_agent_socket(self.agent_id, self.socket, self.start_timeout)

    async def _agent_alive(self) -> bool:
        return True  # Kubernetes starts it; there is nothing to spawn

    async def _spawn_agent(self) -> None:
        return None

    async def read_log(self, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
        out: list[LogLine] = []
        while limit is None or len(out) < limit:
            want = None if limit is None else limit - len(out)
            args: dict[str, Any] = {"key": key, "start": start + len(out)} | (
                {"limit": want} if want else {}
            )
            # the connection as it is: a resync reads the log before the link counts as up
            page = (await self._request("log", **args))["lines"]
            n0 = start + len(out)
            out += [LogLine(key, n0 + i + 1, ts, st, text) for i, (ts, st, text) in enumerate(page)]
            if not page:
                break
        return out

    async def start(self, sink: Any) -> None:
        await self._start_link(sink, retry=True)

    async def stop(self, shutdown: bool) -> None:
        """Let the agent exit (the pod then ends) and close the link."""
        if shutdown:
            with contextlib.suppress(Exception):  # best effort: the pod is deleted anyway
                await self._shutdown(force=False)
        await self._stop_link("attempt collected")
