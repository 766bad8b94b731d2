"""Key material of the control plane, under DATA_DIR/interactive/ (0700):

client_key          the SSH client key agents authorize (ed25519, 0600, made on first start)
known_agents.json   {agent_id: OpenSSH public host key}, pinned the first time each agent
                    registers; a different key for a known id is refused from then on
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import asyncssh


def _private_dir(data_dir: str | Path) -> Path:
    d = Path(data_dir) / "interactive"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    return d


def client_key(data_dir: str | Path) -> asyncssh.SSHKey:
    path = _private_dir(data_dir) / "client_key"
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519")
        tmp = path.with_name(f".client_key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        os.replace(tmp, path)  # atomic: two servers starting at once never see half a key
    return asyncssh.read_private_key(path)


def public_text(key: asyncssh.SSHKey) -> str:
    """`ssh-ed25519 AAAA...` without a comment."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


class PinnedKeys:
    """Trust on first use: the first host key an agent id presents is the only one accepted."""

    def __init__(self, data_dir: str | Path):
        self.path = _private_dir(data_dir) / "known_agents.json"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def check(self, agent_id: str, key: str) -> bool:
        """True when `key` is (now) the pinned key of `agent_id`; pins it if none was."""
        pins = self._load()
        known = pins.get(agent_id)
        if known is not None:
            return known == key
        pins[agent_id] = key
        tmp = self.path.with_name(f".known_agents.{os.getpid()}")
        tmp.write_text(json.dumps(pins, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
        return True
