"""Interactive-access benchmark: the real Service, agent and dial-home SSH connection on loopback.

    python benchmarks/interactive.py

Measures, on one running task (its agent dialled home over TCP on 127.0.0.1):
  dial-in         agent spawn → its SSH connection registered (includes the agent's start)
  exec            Interactive.exec(`true`) → exit status, round trip (p50 / p95)
  pty echo        one byte into `cat` on a PTY → its echo back (p50 / p99; keystroke latency)
  port-forward    MB/s of a bulk upload to a sink server inside the task, through the SSH
                  direct-tcpip channel, next to raw loopback TCP and OpenSSH's `ssh -L` (Debian's
                  sshd on 127.0.0.1 with a throw-away key, AES-GCM) to the same sink, same run
  kernel attach   RemoteKernel.start → kernel_info reply through the tunnel (n=5): cold (ipykernel
                  launched inside the task, as in a task nobody was expected to step into) and
                  with the spare kernel a held task has ready (spares.py), next
                  to a local ipykernel started by jupyter_client
  kernel execute  execute_request("pass") → execute_reply through the tunnel (p50 / p95, n=200),
                  next to the same against the local kernel
  through Jupyter a `jupyter osmo` server (subprocess, its own data dir): the port-forward
                  WebSocket's MB/s, and terminal keystroke echo latency (p50 / p99) through the
                  terminal WebSocket (terminado protocol) into the task's interactive shell
The others go through the Service's Interactive object, not the Jupyter layer.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from osmo_core.config import OsmoConfig
from osmo_core.service import Service

MB = 1 << 20
BULK = int(os.environ.get("OSMO_BENCH_MB", "128")) * MB
CHUNK = 256 * 1024

SINK = (
    "import socket\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('127.0.0.1',{port}));s.listen()\n"
    "while True:\n"
    "    c,_=s.accept();n=0\n"
    "    while (b:=c.recv(1<<20)): n+=len(b)\n"
    "    c.sendall(str(n).encode());c.close()\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


async def upload(reader: asyncio.StreamReader | object, writer: object) -> float:
    """Send BULK bytes, half-close, wait for the sink's count; MB/s."""
    payload = b"x" * CHUNK
    t = time.perf_counter()
    for _ in range(BULK // CHUNK):
        writer.write(payload)  # type: ignore[attr-defined]
        await writer.drain()  # type: ignore[attr-defined]
    writer.write_eof()  # type: ignore[attr-defined]
    got = await reader.read()  # type: ignore[attr-defined]
    dt = time.perf_counter() - t
    assert int(got) == BULK, got
    writer.close()  # type: ignore[attr-defined]
    return BULK / MB / dt


def sshd_forward(tmp: Path, sink: int) -> tuple[list[subprocess.Popen[bytes]], int] | str:
    """OpenSSH: sshd on 127.0.0.1 and `ssh -N -L` to the sink through it; (processes, local
    port), or why not."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd) or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        return "OpenSSH (sshd, ssh, ssh-keygen) is not installed: apt-get install openssh-server"
    d = tmp / "sshd"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True
        )
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port, local = free_port(), free_port()
    (d / "config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'pid'}\nStrictModes no\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nAllowTcpForwarding yes\n"
        "Ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation directory
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(d / "config")], stderr=subprocess.PIPE)
    for _ in range(100):  # sshd listens
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    # fmt: off
    client = subprocess.Popen([
        "ssh", "-N", "-p", str(port), "-i", str(d / "client"), "-c", "aes128-gcm@openssh.com",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR",
        "-L", f"127.0.0.1:{local}:127.0.0.1:{sink}", f"{getpass.getuser()}@127.0.0.1",
    ], stderr=subprocess.PIPE)
    # fmt: on
    for _ in range(200):
        if server.poll() is not None or client.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", local), 0.1).close()  # the sink counts 0
            return [client, server], local
        except OSError:
            time.sleep(0.05)
    for proc in (client, server):
        proc.kill()
    err = (client.communicate()[1] + server.communicate()[1]).decode(errors="replace")
    return f"ssh -L did not come up: {err.strip()[-300:]}"


async def through_jupyter(tmp: Path) -> dict[str, float]:
    """Port-forward WebSocket MB/s and terminal echo latency through a real Jupyter server."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    from osmo_core.backends.local import LocalBackend

    data = tmp / "jupyter"
    data.mkdir()
    (data / "sink.py").write_text(SINK.format(port=(sink := free_port())))
    port, token = free_port(), "bench-token"
    env = {**os.environ, "OSMO_HOME": str(data), "XDG_CONFIG_HOME": str(tmp / "config")}
    env.pop("OSMO_STORE_URL", None)
    # fmt: off
    server = subprocess.Popen([
        sys.executable, "-c", "from osmo_jupyter.app import main; main()", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
        # as root the tasks would run as users of their own, who cannot read this 0700 tmp dir
        "--OsmoConfig.task_isolation=none",
    ], env=env, stdout=subprocess.DEVNULL, stderr=(data / "server.log").open("w"))
    # fmt: on
    base = f"http://127.0.0.1:{port}/osmo/api/v1"
    auth = {"Authorization": f"token {token}"}

    def call(method: str, path: str, body: object = None) -> object:
        raw = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{base}/{path}", raw, auth, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    async def ws(path: str) -> object:
        url = f"ws://127.0.0.1:{port}/osmo/api/v1/{path}"
        req = HTTPRequest(url, headers=auth)
        return await websocket_connect(req, max_message_size=64 << 20)

    out: dict[str, float] = {}
    try:
        for _ in range(300):
            try:
                call("GET", "health")
                break
            except OSError:
                await asyncio.sleep(0.1)
        spec = (
            "workflow:\n  name: bench\n  tasks:\n  - name: main\n"
            f"    command: [python3, {data / 'sink.py'}]\n    ports: [{sink}]\n"
        )
        wf = call("POST", "workflows", {"spec": spec})["id"]  # type: ignore[index]
        task = f"workflows/{wf}/tasks/main"
        for _ in range(600):  # 30 s
            status = call("GET", task)["status"]  # type: ignore[index]
            if status == "RUNNING":
                break
            if status not in ("SUBMITTING", "WAITING", "PROCESSING", "SCHEDULING", "INITIALIZING"):
                raise RuntimeError(f"the sink task ended {status}: see {data / 'server.log'}")
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the sink task did not start in 30 s")
        await asyncio.sleep(0.5)  # the sink binds; the agent has dialled home

        speeds = []
        for _ in range(3):
            conn = await ws(f"{task}/port-forward?port={sink}")
            payload = b"x" * (1 << 20)
            t = time.perf_counter()
            for _ in range(BULK // len(payload)):
                await conn.write_message(payload, binary=True)  # type: ignore[attr-defined]
            await conn.write_message(json.dumps({"type": "eof"}))  # type: ignore[attr-defined]
            got = b""
            while isinstance(msg := await conn.read_message(), bytes):  # type: ignore[attr-defined]
                got += msg
            assert int(got) == BULK, got
            speeds.append(BULK / MB / (time.perf_counter() - t))
            conn.close()  # type: ignore[attr-defined]
        out["ws_mbs"] = max(speeds)

        name = call("POST", f"{task}/api/terminals")["name"]  # type: ignore[index]
        term = await ws(f"{task}/terminals/websocket/{name}")
        await term.read_message()  # type: ignore[attr-defined]  # ["setup", {}]
        await term.write_message(json.dumps(["set_size", 24, 80, 480, 800]))  # type: ignore[attr-defined]
        await asyncio.sleep(1.0)  # the shell's prompt
        while True:  # drain the prompt
            try:
                await asyncio.wait_for(term.read_message(), 0.3)  # type: ignore[attr-defined]
            except asyncio.TimeoutError:
                break
        echo = []
        for i in range(200):
            ch = chr(97 + i % 26)
            t = time.perf_counter()
            await term.write_message(json.dumps(["stdin", ch]))  # type: ignore[attr-defined]
            seen = ""
            while ch not in seen:
                seen += json.loads(await term.read_message())[1]  # type: ignore[attr-defined]
            echo.append(time.perf_counter() - t)
            if i % 50 == 49:
                await term.write_message(json.dumps(["stdin", "\x15"]))  # type: ignore[attr-defined]  # Ctrl-U
                await asyncio.sleep(0.05)
        term.close()  # type: ignore[attr-defined]
        out["echo_p50"], out["echo_p99"] = pct(echo, 0.5), pct(echo, 0.99)
        call("POST", f"workflows/{wf}/cancel")
    finally:
        server.terminate()
        server.wait(30)
        await LocalBackend("local", {"root": str(data)}).shutdown_agent(force=True)
    return out


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "osmo"
        (data).mkdir()
        (data / "sink.py").write_text(SINK.format(port=(port := free_port())))
        config = OsmoConfig(
            data_dir=str(data),
            store_url=f"sqlite:///{data / 'osmo.db'}",
            backends={"local": {"kind": "local", "idle_timeout": 30}},
        )
        svc = Service(config)
        t0 = time.perf_counter()
        await svc.start()
        try:
            await svc.interactive.agent("local", timeout=30)
            dial = time.perf_counter() - t0
            spec = (
                "workflow:\n  name: bench\n  tasks:\n  - name: main\n"
                f"    command: [python3, {data / 'sink.py'}]\n    ports: [{port}]\n"
            )
            wf = await svc.submit(spec)
            for _ in range(1500):  # 30 s
                if svc.task(wf, "main")["status"] == "RUNNING":
                    break
                await asyncio.sleep(0.02)
            else:
                status = svc.task(wf, "main")["status"]
                raise RuntimeError(f"the sink task is {status}, not RUNNING")
            for _ in range(200):  # the sink binds shortly after the task starts
                try:
                    socket.create_connection(("127.0.0.1", port), 0.1).close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            # the sink counted that probe's 0 bytes; fine

            rtt = []
            for _ in range(50):
                t = time.perf_counter()
                sess = await svc.interactive.exec(wf, "main", ["true"])
                await sess.wait()
                rtt.append(time.perf_counter() - t)

            sess = await svc.interactive.exec(wf, "main", ["cat"], pty=(80, 24))
            echo = []
            for i in range(200):
                ch = bytes([97 + i % 26])
                t = time.perf_counter()
                sess.write(ch)
                got = b""
                while ch not in got:
                    got += await sess.read()
                echo.append(time.perf_counter() - t)
            sess.signal("KILL")
            await sess.wait()

            openssh = sshd_forward(Path(tmp), port)
            tunnel, raw, ssh = [], [], []
            for _ in range(3):  # interleaved, best of 3: a shared machine
                r, w = await svc.interactive.open_port(wf, "main", port)
                tunnel.append(await upload(r, w))
                r2, w2 = await asyncio.open_connection("127.0.0.1", port)
                raw.append(await upload(r2, w2))
                if not isinstance(openssh, str):
                    r3, w3 = await asyncio.open_connection("127.0.0.1", openssh[1])
                    ssh.append(await upload(r3, w3))
            if not isinstance(openssh, str):
                for proc in openssh[0]:
                    proc.terminate()
                    proc.wait(10)
            conn = next(iter(svc.interactive.agents.values()))
            cipher = conn.get_extra_info("send_cipher")
            kernel = await kernel_figures(svc, wf)
            await svc.cancel(wf)
        finally:
            await svc.backends["local"].shutdown_agent(force=True)  # type: ignore[attr-defined]
            await svc.stop()
        jupyter = await through_jupyter(Path(tmp))
    print(f"dial-in (agent start -> registered): {dial * 1000:.0f} ms")
    print(
        f"exec round trip (`true`, n=50): p50 {pct(rtt, 0.5):.1f} ms, p95 {pct(rtt, 0.95):.1f} ms"
    )
    print(f"pty echo (n=200): p50 {pct(echo, 0.5):.2f} ms, p99 {pct(echo, 0.99):.2f} ms")
    print(
        f"port-forward upload {BULK // MB} MiB: tunnel {max(tunnel):.0f} MB/s, raw loopback TCP "
        f"{max(raw):.0f} MB/s ({max(tunnel) / max(raw):.2f}x); "
        f"median {statistics.median(tunnel):.0f} vs {statistics.median(raw):.0f}"
    )
    if isinstance(openssh, str):
        print(f"OpenSSH ssh -L: skipped ({openssh})")
    else:
        print(
            f"OpenSSH ssh -L (aes128-gcm): {max(ssh):.0f} MB/s; osmo tunnel / OpenSSH = "
            f"{max(tunnel) / max(ssh):.2f}x (target >= 0.5x and >= 200 MB/s)"
        )
    print(f"cipher negotiated: {cipher}")
    (att, spare, local_att), (rt, local_rt) = kernel
    print(
        f"kernel attach (start in task -> kernel_info reply, n={len(att)}): cold median "
        f"{statistics.median(att) * 1000:.0f} ms, best {min(att) * 1000:.0f} ms; with a spare "
        f"median {statistics.median(spare) * 1000:.0f} ms, best {min(spare) * 1000:.0f} ms "
        f"(target <= 1000 ms); local ipykernel start median "
        f"{statistics.median(local_att) * 1000:.0f} ms"
    )
    print(
        f"kernel execute round trip (n={len(rt)}): tunnel p50 {pct(rt, 0.5):.2f} ms, p95 "
        f"{pct(rt, 0.95):.2f} ms; local kernel p50 {pct(local_rt, 0.5):.2f} ms, p95 "
        f"{pct(local_rt, 0.95):.2f} ms (target p50 < 20 ms)"
    )

    print(
        f"through jupyter: port-forward WebSocket {jupyter['ws_mbs']:.0f} MB/s; terminal echo "
        f"(n=200) p50 {jupyter['echo_p50']:.2f} ms, p99 {jupyter['echo_p99']:.2f} ms "
        "(target p99 < 50 ms)"
    )


async def kernel_figures(svc: Service, wf: str) -> Any:
    """(cold attach, attach to a spare, local start times), (tunnel round trips, local round
    trips)."""
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager

    from osmo_core.interactive.kernel import RemoteKernel

    async def ready(kc: AsyncKernelClient) -> None:
        kc.start_channels()
        await kc.wait_for_ready(timeout=30)

    async def round_trips(kc: AsyncKernelClient, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            msg_id = kc.execute("pass")
            while (await kc.get_shell_msg(timeout=10))["parent_header"].get("msg_id") != msg_id:
                pass
            out.append(time.perf_counter() - t)
        return out

    async def attach_to(wf_id: str) -> tuple[float, AsyncKernelClient, RemoteKernel]:
        """RemoteKernel.start -> kernel_info reply: seconds, its client, the kernel."""
        t = time.perf_counter()
        k = await RemoteKernel.start(svc, wf_id, "main", uuid.uuid4().hex.encode())
        kc = AsyncKernelClient()
        kc.load_connection_info(k.connection_info())
        await ready(kc)
        return time.perf_counter() - t, kc, k

    async def detach(kc: AsyncKernelClient, k: RemoteKernel) -> None:
        kc.stop_channels()
        await k.kill()
        await k.close()

    attach, local_start = [], []
    for i in range(5):
        took, kc, k = await attach_to(wf)
        attach.append(took)
        if i == 4:
            rt = await round_trips(kc, 200)
        await detach(kc, k)

        t = time.perf_counter()
        km = AsyncKernelManager(kernel_name="python3")
        await km.start_kernel()
        lkc = km.client()
        await ready(lkc)
        local_start.append(time.perf_counter() - t)
        if i == 4:
            local_rt = await round_trips(lkc, 200)
        lkc.stop_channels()
        await km.shutdown_kernel(now=True)

    spec = (
        "workflow:\n  name: spare\n  tasks:\n  - name: main\n    interactive: true\n"
        "    command: ['true']\n"
    )
    held = await svc.submit(spec)
    spare = []
    for _ in range(5):
        for _ in range(600):  # the next spare (a second or so after the last was taken)
            if any(w == held for w, _, _ in svc.kernel_spares.ready()):
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("no spare kernel in 30 s")
        took, kc, k = await attach_to(held)
        spare.append(took)
        await detach(kc, k)
    await svc.cancel(held)
    return (attach, spare, local_start), (rt, local_rt)


if __name__ == "__main__":
    asyncio.run(main())
