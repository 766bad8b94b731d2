"""Real SSH hosts for the tests: network namespaces on a bridge, Debian's OpenSSH sshd in each.

Each host is a namespace with its own address (10.231.N.1x/24 on a bridge whose address here is
10.231.N.1), its own sshd (a host key made here, pinned in a known_hosts file made here) and
its own unix user with its own home, so the per-user agent directories of the hosts do not
collide although all namespaces share this machine's filesystem. An ssh_config file names the
hosts h1, h2, ... (aliases, as an admin's ~/.ssh/config would).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import psutil

from osmo_core.backends.ssh.host import control_plane_id
from tests.interactive.conftest import until as _until

SSHD = "/usr/sbin/sshd"


def unavailable() -> str | None:
    """Why these hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, useradd, sshd)"
    if not os.path.exists(SSHD):
        return f"{SSHD} is missing (apt-get install openssh-server; .ci/run installs it)"
    for tool in ("ip", "useradd", "userdel"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    probe = f"osmoprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"network namespaces are not available: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    ok = subprocess.run(
        ["/usr/bin/python3", "-c", "import asyncssh, psutil, fsspec, pip"], capture_output=True
    )
    if ok.returncode != 0:
        return (
            "the hosts' python (/usr/bin/python3) lacks the agent's dependencies (apt-get "
            "install python3-asyncssh python3-psutil python3-fsspec python3-pip)"
        )
    return None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@dataclass
class Host:
    alias: str
    ns: str
    addr: str
    user: str
    home: Path
    sshd_config: Path
    sshd: subprocess.Popen[bytes] | None = None

    def agent_root(self, data_dir: Path) -> Path:
        """The agent root here of the control plane whose data folder is `data_dir`."""
        return self.home / ".osmo-agent" / f"cp-{control_plane_id(data_dir)}"

    def agent_pids(self) -> list[int]:
        """The agents running here, of every control plane."""
        pids = []
        for f in (self.home / ".osmo-agent").glob("cp-*/agent.pid"):
            with contextlib.suppress(OSError, ValueError):  # one being written or removed
                pids.append(int(f.read_text()))
        return pids


@dataclass
class Hosts:
    base: Path
    net: str  # "10.231.N"
    bridge: str
    hosts: list[Host] = field(default_factory=list)
    known_hosts: Path = Path()
    ssh_config: Path = Path()
    client_key: Path = Path()

    def backend(self, **extra: object) -> dict[str, object]:
        """An ssh backend config over these hosts."""
        return {
            "kind": "ssh",
            "hosts": [h.alias for h in self.hosts],
            "known_hosts": str(self.known_hosts),
            "ssh_config": [str(self.ssh_config)],
            "client_keys": [str(self.client_key)],
            "connect_timeout": 3,
            "keepalive_interval": 1,
            "lost_grace": 1,
            "recheck_max": 1,
            "idle_timeout": 120,
            **extra,
        }

    def start_sshd(self, h: Host) -> None:
        h.sshd = subprocess.Popen(
            ["ip", "netns", "exec", h.ns, SSHD, "-D", "-f", str(h.sshd_config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.base / f"sshd-{h.alias}.log", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex((h.addr, 22)) == 0:
                    return
            assert h.sshd.poll() is None, f"sshd of {h.alias} exited; see {self.base}"
            assert time.monotonic() < deadline, f"sshd of {h.alias} does not listen"
            time.sleep(0.05)

    def kill(self, h: Host) -> None:
        """The host goes down: its sshd (with every session) and its agent (with its tasks)."""
        procs: list[psutil.Process] = []
        if h.sshd is not None:
            procs += _tree(h.sshd.pid)
        for pid in h.agent_pids():
            procs += _tree(pid)
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=5)
        if h.sshd is not None:
            h.sshd.wait(5)
            h.sshd = None

    def kill_agent(self, h: Host) -> None:
        """Only the agents (and their tasks) die; sshd stays."""
        procs = [p for pid in h.agent_pids() for p in _tree(pid)]
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=5)

    def close(self) -> None:
        for h in self.hosts:
            self.kill(h)
            # what outlives sshd: rootless podman's pause process (an agent's `podman info`)
            left = [p for p in psutil.process_iter(["username"]) if p.info["username"] == h.user]
            for p in left:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGKILL)
            psutil.wait_procs(left, timeout=5)
            subprocess.run(["ip", "netns", "del", h.ns], capture_output=True)
            with contextlib.suppress(KeyError):  # rootless podman's folders (no XDG_RUNTIME_DIR)
                uid = pwd.getpwnam(h.user).pw_uid
                for d in (f"podman-run-{uid}", f"containers-user-{uid}"):
                    shutil.rmtree(Path("/tmp") / d, ignore_errors=True)
            subprocess.run(["userdel", h.user], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30).stdout


def clear_stale() -> None:
    """Remove the hosts of test sessions that were killed (their pid is gone): their bridge,
    namespaces, users and processes outlive them, and their subnet could be a later session's."""
    for tag in re.findall(r"^\d+: obr(\d+)[:@]", _ip("-o", "link", "show"), re.M):
        if psutil.pid_exists(int(tag)):
            continue
        users = [u.pw_name for u in pwd.getpwall() if re.fullmatch(rf"osmo{tag}h\d+", u.pw_name)]
        left = [p for p in psutil.process_iter(["username"]) if p.info["username"] in users]
        for p in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(left, timeout=5)
        for ns in re.findall(rf"^(osmo{tag}h\d+)\b", _ip("netns", "list"), re.M):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for user in users:
            subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["ip", "link", "del", f"obr{tag}"], capture_output=True)


def _free_net() -> str:
    """A 10.231.N/24 no other session's bridge has, starting from one our pid picks."""
    used = set(re.findall(r"inet 10\.231\.(\d+)\.", _ip("-o", "addr")))
    start = os.getpid() % 200
    n = next(
        (20 + (start + k) % 200 for k in range(200) if str(20 + (start + k) % 200) not in used),
        None,
    )
    assert n is not None, "every 10.231.N/24 is taken by other test sessions' hosts"
    return f"10.231.{n}"


def make_hosts(base: Path, n: int) -> Hosts:
    """`n` hosts h1..hn; close() undoes everything."""
    clear_stale()
    tag = str(os.getpid())  # clear_stale() reads it back as the pid
    net = _free_net()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)  # the hosts' users live below
    hosts = Hosts(base, net, f"obr{tag}")
    try:
        _run("ip", "link", "add", hosts.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{net}.1/24", "dev", hosts.bridge)
        _run("ip", "link", "set", hosts.bridge, "up")
        key = asyncssh.generate_private_key("ssh-ed25519")
        hosts.client_key = base / "client_key"
        key.write_private_key(str(hosts.client_key))
        hosts.client_key.chmod(0o600)
        known, config = [], []
        for i in range(1, n + 1):
            h = Host(
                alias=f"h{i}",
                ns=f"osmo{tag}h{i}",
                addr=f"{net}.{10 + i}",
                user=f"osmo{tag}h{i}",
                home=base / f"home-h{i}",
                sshd_config=base / f"sshd-h{i}.conf",
            )
            hosts.hosts.append(h)
            _run("ip", "netns", "add", h.ns)
            veth, peer = f"ov{tag}h{i}", f"on{tag}h{i}"
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
            _run("ip", "link", "set", peer, "netns", h.ns)
            _run("ip", "link", "set", veth, "master", hosts.bridge, "up")
            _run("ip", "-n", h.ns, "addr", "add", f"{h.addr}/24", "dev", peer)
            _run("ip", "-n", h.ns, "link", "set", peer, "up")
            _run("ip", "-n", h.ns, "link", "set", "lo", "up")
            _run("useradd", "-M", "-d", str(h.home), "-s", "/bin/sh", h.user)
            _run("usermod", "-p", "*", h.user)  # no password, but not locked: keys only
            (h.home / ".ssh").mkdir(parents=True)
            (h.home / ".ssh" / "authorized_keys").write_text(key.export_public_key().decode())
            _run("chown", "-R", f"{h.user}:{h.user}", str(h.home))
            h.home.chmod(0o755)
            host_key = asyncssh.generate_private_key("ssh-ed25519")
            host_key_path = base / f"host_key_h{i}"
            host_key.write_private_key(str(host_key_path))
            host_key_path.chmod(0o600)
            known.append(f"{h.alias},{h.addr} {host_key.export_public_key().decode().strip()}")
            config.append(f"Host {h.alias}\n  HostName {h.addr}\n  User {h.user}\n")
            h.sshd_config.write_text(
                f"ListenAddress {h.addr}\nHostKey {host_key_path}\n"
                f"PidFile {base}/sshd-h{i}.pid\nAuthorizedKeysFile .ssh/authorized_keys\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                "AllowTcpForwarding yes\nAllowStreamLocalForwarding yes\n"
                f"AllowUsers {h.user}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
                "MaxSessions 100\nMaxStartups 100\n"
            )
        hosts.known_hosts = base / "known_hosts"
        hosts.known_hosts.write_text("\n".join(known) + "\n")
        hosts.ssh_config = base / "ssh_config"
        hosts.ssh_config.write_text("\n".join(config))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        for h in hosts.hosts:
            hosts.start_sshd(h)
    except BaseException:
        hosts.close()
        raise
    return hosts


async def until(cond: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """`tests.interactive.conftest.until` with a longer default: hosts answer slower."""
    return await _until(cond, timeout, what)
