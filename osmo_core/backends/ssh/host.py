"""One SSH host of the SSH backend: connect, check, provision the agent, start it.

Connections use asyncssh with the user's OpenSSH setup (~/.ssh/config aliases, keys, agent,
ProxyJump, known_hosts); a host whose key is not known, or differs, is refused: checking is
never turned off. Provisioning installs this package into a venv per build on the host:

    DIR/builds/<version>-<digest>/venv   python -m venv --system-site-packages, then
                                         pip install --no-deps --no-index <the wheel>
    DIR/cp-<id>/                         this control plane's agent root (runs/, agent.log,
                                         agent.sock, pushed credentials); <id> is made once
                                         and kept in the data folder (control_plane_id)

The wheel is built once per build here (`pip wheel` of the source tree) and pushed over SFTP,
so the host needs no route to a package index. Its dependencies (asyncssh, psutil, fsspec)
must already be importable by the host's Python (distribution packages, or a pip install by
the admin); with `install_deps: true` pip fetches them from the host's index instead.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import re
import secrets
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from ... import __version__
from ...data import credentials
from ...errors import BackendError

ID_FILE = "control-plane-id"  # in the data folder's ssh/
MIN_PYTHON = (3, 10)  # the package's requires-python
MIN_DISK = 200 * 2**20  # bytes free in DIR
_SOCKET_MAX = 100

# Runs under the host's own python (any 3.x: it must be able to say it is too old).
_PROBE = r"""
import json, os, platform, shutil, subprocess, sys
def gpus():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, timeout=5)
        rows = [l.split(",", 1) for l in out.stdout.splitlines() if "," in l]
        if out.returncode == 0 and rows:
            return [{"index": int(i), "name": n.strip()} for i, n in rows]
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    if os.path.exists("/etc/nv_tegra_release"):
        try:
            model = open("/proc/device-tree/model").read().strip("\0\n ")
        except OSError:
            model = "Jetson"
        return [{"index": 0, "name": model + " (integrated)"}]
    return []
d = os.path.expanduser(sys.argv[1])
os.makedirs(d, exist_ok=True)
print(json.dumps({"python": list(sys.version_info[:3]), "arch": platform.machine(),
    "cpus": len(os.sched_getaffinity(0)),
    "memory": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
    "disk_free": shutil.disk_usage(d).free, "dir": d, "gpus": gpus(),
    "hostname": platform.node()}))
"""


@dataclass
class HostConfig:
    """One entry of the backend's `hosts`, with the backend-wide settings folded in."""

    alias: str  # as written: a name, an address or a ~/.ssh/config alias
    python: str = "python3"
    dir: str = "~/.osmo-agent"
    port: int | None = None
    username: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # arch, cpus, memory, gpus
    connect: dict[str, Any] = field(default_factory=dict)  # asyncssh options
    install_deps: bool = False
    idle_timeout: float = 600.0


def connect_options(config: dict[str, Any]) -> dict[str, Any]:
    """asyncssh options from the backend config; absent ones keep OpenSSH's defaults."""
    opts: dict[str, Any] = {
        "connect_timeout": float(config.get("connect_timeout", 10)),
        "keepalive_interval": float(config.get("keepalive_interval", 5)),
        "keepalive_count_max": 3,
    }
    if config.get("known_hosts"):
        opts["known_hosts"] = str(Path(config["known_hosts"]).expanduser())
    if config.get("ssh_config"):
        paths = config["ssh_config"]
        opts["config"] = [str(Path(p).expanduser()) for p in _as_list(paths)]
    if config.get("client_keys"):
        opts["client_keys"] = [str(Path(p).expanduser()) for p in _as_list(config["client_keys"])]
    return opts


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


async def connect(host: HostConfig) -> asyncssh.SSHClientConnection:
    """An SSH connection, or BackendError saying why not in words an admin can act on."""
    kw = dict(host.connect)
    if host.port:
        kw["port"] = host.port
    if host.username:
        kw["username"] = host.username
    try:
        return await asyncio.wait_for(asyncssh.connect(host.alias, **kw), kw["connect_timeout"] + 1)
    except asyncssh.HostKeyNotVerifiable as e:
        where = kw.get("known_hosts", "~/.ssh/known_hosts")
        raise BackendError(
            f"host {host.alias}: refused, its host key is not trusted ({e.reason}); "
            f"add its key to {where} if the host is the one you mean"
        ) from None
    except asyncssh.PermissionDenied as e:
        raise BackendError(f"host {host.alias}: login refused ({e.reason})") from None
    except (OSError, asyncio.TimeoutError) as e:
        why = str(e) or "connection timed out"
        raise BackendError(f"host {host.alias} is unreachable: {why}") from None
    except asyncssh.Error as e:
        raise BackendError(f"host {host.alias}: SSH error: {e.reason}") from None


async def run(
    conn: asyncssh.SSHClientConnection, alias: str, cmd: str, timeout: float = 120
) -> str:
    """stdout of a command on the host; BackendError with its stderr when it fails."""
    try:
        done = await conn.run(cmd, timeout=timeout)
    except (asyncssh.Error, OSError) as e:
        raise BackendError(f"host {alias}: {cmd.split()[0]}: {e}") from None
    if done.exit_status != 0:
        err = str(done.stderr or done.stdout or "").strip().splitlines()
        raise BackendError(
            f"host {alias}: `{cmd[:80]}` failed (exit {done.exit_status}): "
            f"{err[-1] if err else 'no output'}"
        )
    return str(done.stdout or "")


def control_plane_id(data_dir: Path) -> str:
    """This control plane's id, made once and kept in its data folder.

    Its agents' root on a host is DIR/cp-<id>: control planes that share a host (and its
    login user) never see, adopt or stop each other's attempts, whose keys may be equal, nor
    read each other's pushed credentials."""
    path = data_dir / "ssh" / ID_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{ID_FILE}.{os.getpid()}")
        tmp.write_text(secrets.token_hex(8) + "\n")
        try:
            os.link(tmp, path)  # atomic, never replaces: two at once agree on the first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    found = path.read_text().strip()
    if not re.fullmatch(r"[0-9a-f]{16}", found):
        raise BackendError(
            f"{path}: expected this control plane's id (16 hex digits), got {found[:40]!r}; "
            "remove the file to make a new one (its SSH hosts' running attempts are then lost)"
        )
    return found


@dataclass
class Remote:
    """Where things are on a provisioned host."""

    facts: dict[str, Any]  # the probe's answer
    dir: str
    root: str
    python: str  # the venv's interpreter
    socket: str


async def probe(conn: asyncssh.SSHClientConnection, host: HostConfig) -> dict[str, Any]:
    cmd = f"{shlex.quote(host.python)} -c {shlex.quote(_PROBE)} {shlex.quote(host.dir)}"
    try:
        facts: dict[str, Any] = json.loads(await run(conn, host.alias, cmd, 30))
    except ValueError:
        raise BackendError(f"host {host.alias}: the probe did not answer JSON") from None
    if tuple(facts["python"][:2]) < MIN_PYTHON:
        have = ".".join(map(str, facts["python"]))
        raise BackendError(
            f"host {host.alias}: {host.python} is Python {have}; the agent needs "
            f"{'.'.join(map(str, MIN_PYTHON))} or newer (set 'python' for this host)"
        )
    if facts["disk_free"] < MIN_DISK:
        raise BackendError(
            f"host {host.alias}: only {facts['disk_free'] // 2**20} MiB free in {facts['dir']}; "
            f"the agent needs {MIN_DISK // 2**20} MiB"
        )
    return facts


PACKAGE = Path(__file__).resolve().parents[2]  # osmo_core/ (this is backends/ssh/host.py)


@functools.lru_cache(maxsize=1)
def build_id() -> str:
    """This package's version plus a digest of its code: a changed checkout is a new build."""
    h = hashlib.sha256()
    for p in sorted(PACKAGE.rglob("*.py")):
        h.update(str(p.relative_to(PACKAGE)).encode() + b"\0" + p.read_bytes())
    return f"{__version__}-{h.hexdigest()[:12]}"


_wheel_lock = asyncio.Lock()


async def local_wheel(cache: Path, configured: str | None) -> Path:
    """The wheel to push: `configured`, or one built here once per build."""
    if configured:
        return Path(configured).expanduser()
    out = cache / build_id()
    async with _wheel_lock:
        found = sorted(out.glob("*.whl"))
        if found:
            return found[0]
        src = PACKAGE.parent
        if not (src / "pyproject.toml").exists():
            raise BackendError(
                "the SSH backend needs a wheel of osmo-jupyter to install on hosts: this "
                "installation has no source tree to build one from; set the backend's "
                f"'wheel' to a wheel file of version {__version__}"
            )
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="wheel-", dir=cache))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
            *("-w", str(tmp), str(src)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        log_text, _ = await proc.communicate()
        wheels = sorted(tmp.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise BackendError(f"building the agent's wheel failed: {log_text.decode()[-500:]}")
        out.mkdir(parents=True, exist_ok=True)
        wheels[0].rename(out / wheels[0].name)
        return out / wheels[0].name


async def provision(
    conn: asyncssh.SSHClientConnection,
    host: HostConfig,
    cache: Path,
    wheel: str | None,
    cp_id: str,
) -> Remote:
    """Check the host and install this build of the agent there unless it already is; the
    agent's root is control plane `cp_id`'s own."""
    facts = await probe(conn, host)
    d = facts["dir"]
    build = f"{d}/builds/{build_id()}"
    q = shlex.quote
    venv_py = f"{build}/venv/bin/python"
    root = f"{d}/cp-{cp_id}"
    sock = f"{root}/agent.sock"
    if len(sock.encode()) > _SOCKET_MAX:
        sock = f"/tmp/osmo-agent-{hashlib.sha256(root.encode()).hexdigest()[:16]}.sock"
    remote = Remote(facts, d, root, venv_py, sock)
    if (await run(conn, host.alias, f"test -f {q(build)}/ok && echo yes || true")).strip():
        return remote
    whl = await local_wheel(cache, wheel)
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs(build, exist_ok=True)
        await sftp.put(str(whl), f"{build}/{whl.name}")
    py = q(host.python)
    pip = "install -q --disable-pip-version-check " + (
        f"{q(whl.name)}" if host.install_deps else f"--no-deps --no-index {q(whl.name)}"
    )
    # The host's own pip installs into a venv without one (pip >= 22.3: --python), which is
    # seconds faster than a venv with its own pip; the latter is the fallback. Built aside and
    # renamed into place, so two control planes provisioning at once cannot mix their venvs.
    await run(
        conn,
        host.alias,
        f"cd {q(build)} && t=venv.$$ && rm -rf $t && "
        f"{py} -m venv --without-pip --system-site-packages $t && "
        f"({py} -m pip --python $t/bin/python {pip} || (rm -rf $t && "
        f"{py} -m venv --system-site-packages $t && $t/bin/python -m pip {pip})) && "
        "(mv -T $t venv 2>/dev/null || rm -rf $t)",
        300,
    )
    check = f"{q(venv_py)} -c 'import osmo_core.agent.server'"
    try:
        await run(conn, host.alias, check, 60)
    except BackendError as e:
        raise BackendError(
            f"{e}. The agent's dependencies (asyncssh, psutil, fsspec) must be importable by "
            f"{host.python} on the host (e.g. Debian: apt install python3-asyncssh "
            "python3-psutil python3-fsspec), or set install_deps: true for a host with a "
            "package index"
        ) from None
    await run(conn, host.alias, f"touch {q(build)}/ok")
    return remote


async def start_agent(conn: asyncssh.SSHClientConnection, host: HostConfig, r: Remote) -> None:
    """Start the agent detached (it exits at once when another one holds the root).

    It starts with the SSH login's environment (asyncssh sends none of the control plane's) and
    scrubs that itself at start (agent/environment.py), as every agent does."""
    q = shlex.quote
    await run(
        conn,
        host.alias,
        f"mkdir -p {q(r.root)} && setsid {q(r.python)} -m osmo_core.agent --root {q(r.root)} "
        f"--socket {q(r.socket)} --idle-timeout {host.idle_timeout:g} --detach "
        f">> {q(r.root)}/agent.log 2>&1 < /dev/null",
        30,
    )


async def put_file(sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int = 0o600) -> None:
    """Write a small file atomically (the agent may be reading it)."""
    tmp = f"{path}.tmp"
    async with sftp.open(tmp, "wb", asyncssh.SFTPAttrs(permissions=mode)) as f:
        await f.write(data)
    await sftp.posix_rename(tmp, path)


async def push_credentials(
    sftp: asyncssh.SFTPClient, root: str, creds: dict[str, dict[str, Any]]
) -> None:
    path = f"{root}/{credentials.FILE}"
    if creds:
        await put_file(sftp, path, json.dumps(creds).encode())
    elif await sftp.exists(path):
        await sftp.remove(path)
