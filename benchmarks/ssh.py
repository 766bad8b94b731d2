"""SSH backend benchmark on real hosts (network namespaces + Debian's sshd, as tests/ssh makes).

    python benchmarks/ssh.py        # needs root, /usr/sbin/sshd, ip netns; about a minute

provision  a fresh host (new user, empty home) from `start()` to online: connect, probe,
           push the wheel, venv + pip install, start the agent; the wheel build is apart
overhead   N short tasks one after another on one host through the backend (launch -> agent
           -> workdir, logs, exit -> log fetched back) vs the same command over a plain
           asyncssh connection to the same host, in the same run            target <= 1.5x
spread     200 tasks launched at once over two hosts, until the last end arrives
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ssh"))

import asyncssh
from sshhosts import Hosts, make_hosts, unavailable

from osmo_core.backends.ssh import host as ssh_host
from osmo_core.backends.ssh.backend import SSHBackend
from osmo_core.wire import BackendEvent, Exited, LaunchRequest

N = 50
CMD = "echo hi"


class Ends:
    def __init__(self) -> None:
        self.done: dict[str, float] = {}
        self.changed = asyncio.Event()

    def __call__(self, ev: BackendEvent) -> None:
        if isinstance(ev, Exited):
            self.done[ev.key] = time.perf_counter()
            self.changed.set()

    async def wait(self, keys: set[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not keys <= self.done.keys():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), deadline - time.monotonic())


async def main() -> None:
    why = unavailable()
    if why:
        sys.exit(f"cannot run: {why}")
    base = Path(tempfile.mkdtemp(prefix="osmo-ssh-bench-", dir="/tmp"))
    base.chmod(0o755)  # the hosts' users live below
    hosts: Hosts = make_hosts(base / "hosts", 2)
    backend: SSHBackend | None = None
    try:
        cp = base / "cp"
        t = time.perf_counter()
        await ssh_host.local_wheel(cp / "ssh" / "wheels", None)
        print(f"wheel build (once per build, here):     {time.perf_counter() - t:6.2f} s")
        ends = Ends()
        backend = SSHBackend("lab", hosts.backend(root=str(cp)))
        t = time.perf_counter()
        await backend.start(ends)
        assert all(h.node.online for h in backend.hosts.values()), backend.host_status()
        print(f"provision 2 fresh hosts (in parallel):  {time.perf_counter() - t:6.2f} s")

        # overhead: one after another on h1, alternating with the plain run (same load)
        per_task, plain = [], []
        h1 = hosts.hosts[0]
        async with asyncssh.connect(
            h1.addr,
            username=h1.user,
            known_hosts=str(hosts.known_hosts),
            client_keys=[str(hosts.client_key)],
        ) as conn:
            for i in range(N):
                key = f"wf-b/t{i}/0"
                t = time.perf_counter()
                await backend.launch(LaunchRequest(key, ["sh", "-c", CMD], node="h1"))
                await ends.wait({key})
                per_task.append(ends.done[key] - t)
                t = time.perf_counter()
                await conn.run(f"sh -c {CMD!r}", check=True)
                plain.append(time.perf_counter() - t)
        ours, theirs = statistics.median(per_task), statistics.median(plain)
        print(f"task on a host via the agent (median):  {ours * 1000:6.1f} ms  (n={N})")
        print(f"same command, plain asyncssh (median):  {theirs * 1000:6.1f} ms")
        print(f"ratio:                                  {ours / theirs:6.2f}x  (target <= 1.5x)")

        # spread: 200 at once over two hosts
        keys = [f"wf-s/t{i}/0" for i in range(200)]
        t = time.perf_counter()
        await asyncio.gather(
            *(
                backend.launch(LaunchRequest(k, ["true"], node=("h1", "h2")[i % 2], cpu=0.01))
                for i, k in enumerate(keys)
            )
        )
        launched = time.perf_counter() - t
        await ends.wait(set(keys))
        total = time.perf_counter() - t
        print(f"200 tasks over 2 hosts: all launched    {launched:6.2f} s")
        print(f"                        all ended       {total:6.2f} s")
        print(f"                                        {200 / total:6.1f} tasks/s")
    finally:
        if backend is not None:
            await backend.shutdown_agents()
        hosts.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
