"""One host of the SSH backend: its SSH connection, its agent (an AgentLink over the
connection), its node, and the data that crosses to and from it (see backend.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import asyncssh

from ...agent.logfile import format_line, parse_line
from ...agent.workdir import LOG, OUTPUT, attempt_dir
from ...errors import BackendError
from ...wire import BackendEvent, EventSink, Exited, InputSpec, LogLine, Lost, Node, NodeOnline
from ..agentlink import AgentLink
from . import host as ssh_host
from .host import HostConfig, Remote

if TYPE_CHECKING:
    from .backend import SSHBackend

log = logging.getLogger("osmo_core.backends.ssh")


class HostLink(AgentLink):
    """One host: its SSH connection, its agent, its node."""

    start_timeout = 20.0
    spawn_interval = 2.0

    def __init__(self, backend: SSHBackend, cfg: HostConfig):
        super().__init__(f"host {cfg.alias}")
        self.backend = backend
        self.cfg = cfg
        self.backoff_max = backend.recheck_max
        self.mirror = backend.root / "ssh" / backend.name / cfg.alias
        ov = cfg.overrides
        self.node = Node(
            name=cfg.alias,
            cpu=float(ov.get("cpus", 0)),
            memory=int(ov.get("memory", 0)),
            gpus=[int(g) for g in ov.get("gpus", [])],
            arch=ov.get("arch", ""),
            online=False,
        )
        self.address = cfg.alias
        self.error = "not connected yet"
        self.conn: asyncssh.SSHClientConnection | None = None
        self.sftp: asyncssh.SFTPClient | None = None  # one per connection, for every transfer
        self.remote: Remote | None = None
        self._closed: asyncio.Task[None] | None = None
        self._forward: asyncssh.SSHListener | None = None
        self._finishing: set[str] = set()
        self._logs: dict[str, tuple[BinaryIO, bool]] = {}  # key -> (mirrored log, from line 1)
        self._bg: set[asyncio.Task[Any]] = set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, sink: EventSink) -> None:
        if not await self._start_link(sink, retry=True):
            log.warning("ssh backend %s: %s; retrying", self.backend.name, self.error)

    async def stop(self) -> None:
        await self._stop_link(f"the ssh backend {self.backend.name!r} was stopped")
        for t in list(self._bg):
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        self._close_ssh()
        self.node.online = False
        for f, _ in self._logs.values():
            f.close()
        self._logs.clear()

    async def shutdown(self) -> None:
        with contextlib.suppress(BackendError):
            await self._shutdown(force=True)

    def schedule(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    # --- AgentLink ---------------------------------------------------------------------------

    async def _open(self) -> tuple[Any, Any]:
        if self.conn is None or self._closed is None or self._closed.done():
            self._close_ssh()
            try:
                await self._ssh_connect()
            except (BackendError, OSError, asyncssh.Error) as e:
                self.error = (
                    str(e) if isinstance(e, BackendError) else f"host {self.cfg.alias}: {e}"
                )
                self._close_ssh()
                raise BackendError(self.error) from None
        assert self.conn is not None and self.remote is not None
        try:
            return await self.conn.open_unix_connection(self.remote.socket)
        except asyncssh.ChannelOpenError as e:
            raise OSError(f"{self.remote.socket}: {e.reason}") from None
        except (asyncssh.Error, OSError) as e:  # the connection went meanwhile
            self._close_ssh()
            raise BackendError(f"host {self.cfg.alias}: {e}") from None

    async def _agent_alive(self) -> bool:
        return False  # starting one is idempotent on the host (its root's lock)

    async def _spawn_agent(self) -> None:
        if self.conn is None or self.remote is None:
            raise BackendError(f"host {self.cfg.alias}: not connected")
        await ssh_host.start_agent(self.conn, self.cfg, self.remote)

    def _unreachable(self, since: float) -> None:
        self._set_online(False)  # no new tasks here meanwhile; running ones get the grace
        if time.monotonic() - since < self.backend.lost_grace:
            return
        for key in list(self._watch):
            self._deliver(Lost(key, f"host {self.cfg.alias} is unreachable: {self.error}"))

    def _reconnected(self) -> None:
        self.error = ""
        self._set_online(True)

    def _disconnected(self) -> None:
        self._set_online(False)  # at once: a retry must not be placed on a host that is down

    def _set_online(self, online: bool) -> None:
        """Mark the node and tell the engine (its placement) when that changed."""
        if self.node.online == online:
            return
        self.node.online = online
        if self._sink is not None:
            self._sink(NodeOnline(self.backend.name, self.cfg.alias, online))

    async def read_log(self, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
        if self.sftp is None or self.remote is None:
            raise BackendError(f"host {self.cfg.alias} is offline: its logs cannot be read")
        path = str(attempt_dir(Path(self.remote.root), key) / LOG)
        try:
            async with self.sftp.open(path, "rb") as f:
                return await _page(f, key, start, limit)
        except asyncssh.SFTPNoSuchFile:
            return []
        except (asyncssh.Error, OSError) as e:
            raise BackendError(f"host {self.cfg.alias}: log of {key}: {e}") from None

    # --- the SSH connection ------------------------------------------------------------------

    async def _ssh_connect(self) -> None:
        conn = await ssh_host.connect(self.cfg)
        try:
            remote = await ssh_host.provision(
                conn,
                self.cfg,
                self.backend.root / "ssh" / "wheels",
                self.backend.wheel,
                self.backend.cp_id,
            )
            sftp = await conn.start_sftp_client()
            await sftp.makedirs(remote.root, exist_ok=True)
            await ssh_host.push_credentials(sftp, remote.root, self.backend.credentials)
        except BaseException:
            conn.close()
            raise
        self.conn, self.remote, self.sftp = conn, remote, sftp
        self._closed = asyncio.ensure_future(conn.wait_closed())
        self.address = str((conn.get_extra_info("peername") or (self.cfg.alias,))[0])
        facts, ov = remote.facts, self.cfg.overrides
        self.node.cpu = float(ov.get("cpus", facts["cpus"]))
        self.node.memory = int(ov.get("memory", facts["memory"]))
        names = {g["index"]: g["name"] for g in facts["gpus"]}
        self.node.gpus = [int(g) for g in ov.get("gpus", names)]
        self.node.gpu_names = [names.get(g, "") for g in self.node.gpus]
        self.node.arch = ov.get("arch", facts["arch"])
        if self.backend.dial_home is not None:
            await self.write_dial_home()

    async def write_dial_home(self) -> None:
        """Forward a port on the host back to the control plane's interactive listener and
        tell the agent (ROOT/dialhome.json) to dial it."""
        from ...wire import DIALHOME, DialHomeInfo

        assert self.backend.dial_home is not None
        if self.conn is None or self.remote is None:
            return
        host, port, key = self.backend.dial_home
        try:
            if self._forward is not None:
                self._forward.close()
            self._forward = await self.conn.forward_remote_port("127.0.0.1", 0, host, port)
            info = DialHomeInfo(
                "127.0.0.1",
                self._forward.get_port(),
                self.backend.agent_id_of(self.cfg.alias),
                key,
            )
            data = dataclasses.asdict(info)
            assert self.sftp is not None
            await ssh_host.put_file(
                self.sftp, f"{self.remote.root}/{DIALHOME}", json.dumps(data).encode()
            )
        except (asyncssh.Error, OSError) as e:
            log.warning("host %s: no interactive access: %s", self.cfg.alias, e)

    def _close_ssh(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = self.sftp = None
        self._forward = None

    # --- data --------------------------------------------------------------------------------

    async def stage_input(self, key: str, inp: InputSpec) -> InputSpec:
        """An upstream output for a task here: in place when it was made on this host, else
        pushed from the control plane's copy."""
        if not inp.path:
            return inp
        if self.sftp is None or self.remote is None:
            raise BackendError(f"host {self.cfg.alias} is offline")
        sftp = self.sftp
        local = Path(inp.path)
        if local.is_relative_to(self.mirror):
            return dataclasses.replace(
                inp, path=str(Path(self.remote.root) / local.relative_to(self.mirror))
            )
        dest = attempt_dir(Path(self.remote.root) / "staged", key) / str(inp.index)
        try:
            await sftp.makedirs(str(dest.parent), exist_ok=True)
            if await sftp.exists(str(dest)):
                await sftp.rmtree(str(dest))
            if local.is_dir():
                await sftp.put(str(local), str(dest), recurse=True)
            else:
                await sftp.makedirs(str(dest), exist_ok=True)
        except (asyncssh.Error, OSError) as e:
            raise BackendError(f"host {self.cfg.alias}: staging input {inp.index}: {e}") from None
        return dataclasses.replace(inp, path=str(dest))

    def _deliver(self, ev: BackendEvent) -> None:
        w = self._watch.get(ev.key)
        if isinstance(ev, LogLine) and (w is None or ev.n > w.n):
            self._mirror_line(ev)  # the log here, as it comes: no transfer at the end
        elif isinstance(ev, Exited) and w is not None:
            if ev.key not in self._finishing:  # a repeat (resync) while fetching is dropped
                self._finishing.add(ev.key)
                whole_log = not self._logs.get(ev.key, (None, w.n == 0))[1]
                self.schedule(self._finish(ev, whole_log))
            return
        super()._deliver(ev)

    async def running(self) -> set[str] | None:
        got = await super().running()
        return None if got is None else got | self._finishing  # ended, its end not sent yet

    def watching(self, key: str) -> bool:
        """Whether the attempt is live here: watched, or its end being fetched."""
        return key in self._watch or key in self._finishing

    def _mirror_line(self, ev: LogLine) -> None:
        if ev.key not in self._logs:
            here = attempt_dir(self.mirror, ev.key)
            here.mkdir(parents=True, exist_ok=True)
            self._logs[ev.key] = (open(here / LOG, "wb"), ev.n == 1)  # noqa: SIM115
        self._logs[ev.key][0].write(format_line(ev.ts, ev.stream, ev.text))

    async def _finish(self, ev: Exited, whole_log: bool) -> None:
        """Fetch the attempt's outputs (on success) here before reporting its end: downstream
        tasks elsewhere read them from here."""
        end: BackendEvent = ev
        f = self._logs.pop(ev.key, (None, True))[0]
        if f is not None:
            f.close()
        try:
            await self.fetch(ev.key, ev.exit_code == 0, whole_log)
        except (asyncssh.Error, OSError, BackendError) as e:
            log.warning("host %s: fetching %s: %s", self.cfg.alias, ev.key, e)
            if self.conn is None or self.conn.is_closed():  # before the reader notices
                self._set_online(False)
            if ev.exit_code == 0:
                end = Lost(ev.key, f"the outputs could not be fetched from {self.cfg.alias}: {e}")
        finally:
            self._finishing.discard(ev.key)
        super()._deliver(end)

    async def fetch(self, key: str, outputs: bool, whole_log: bool) -> None:
        """Copy an ended attempt's log (when asked) and outputs here."""
        if self.sftp is None or self.remote is None:
            raise BackendError(f"host {self.cfg.alias} is offline")
        sftp = self.sftp
        remote = attempt_dir(Path(self.remote.root), key)
        here = attempt_dir(self.mirror, key)
        here.mkdir(parents=True, exist_ok=True)
        if whole_log:  # lines we never saw (watched from the middle, after a restart)
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await sftp.get(str(remote / LOG), str(here / LOG))
        if (here / OUTPUT).exists():
            shutil.rmtree(here / OUTPUT)
        if outputs:
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                names = await sftp.listdir(str(remote / OUTPUT))
                if set(names) - {".", ".."}:
                    await sftp.get(str(remote / OUTPUT), str(here), recurse=True)
        (here / OUTPUT).mkdir(exist_ok=True)


async def _page(f: Any, key: str, start: int, limit: int | None) -> list[LogLine]:
    """Lines `start`.. (at most `limit`) of a remote log, read a chunk at a time: memory
    holds one chunk and the page, whatever the log's size. A partial last line is not a
    line yet."""
    out: list[LogLine] = []
    n = 0  # lines seen
    rest = b""
    while limit is None or len(out) < limit:
        chunk: bytes = await f.read(1 << 20)
        if not chunk:
            break
        data = rest + chunk
        found = data.count(b"\n")
        if n + found <= start:  # all before the page: only count them
            n += found
            rest = data[data.rfind(b"\n") + 1 :]
            continue
        raws = data.split(b"\n")
        rest = raws.pop()
        for raw in raws:
            n += 1
            if n > start and (limit is None or len(out) < limit):
                out.append(parse_line(key, n, raw))
    return out
