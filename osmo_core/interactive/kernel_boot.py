"""Runs *inside a task* (its Python, its environment, its cwd): starts an IPython kernel there.

The control plane never imports this module: it sends its source text through an exec channel
(`python3 -c SOURCE boot`), because the task's Python need not have osmo installed — only
ipykernel. Standard library only, except ipykernel in the kernel process.

    boot      reads {"key", "signature_scheme", "source"} on stdin; exits 3 with a message when
              ipykernel is missing; else picks six free ports on 127.0.0.1, writes the connection
              file (0600, in a private temp dir), starts the kernel detached (its own session: it
              outlives this exec channel and any drop of the agent's SSH connection) and prints
              {"pid", "ports", "osmo_port", "python"}. The temp dir is removed once the kernel is
              up (it has read all of it by then) or has failed to come up: however the kernel
              ends later, even by SIGKILL, it leaves nothing behind.
    kernel    ipykernel's IPKernelApp on that connection file (what `python -m ipykernel_launcher
              -f FILE` runs) plus a small line-JSON control port, `osmo_port`, for the control
              plane: {"op": "signal", "signal": N} signals the kernel's process group (interrupt,
              terminate, kill); {"op": "end", "reason": TEXT} prints the reason on the kernel's
              stderr (it shows in the running cell) and exits. An open control connection is how
              the control plane knows the kernel lives. Once it listens, the kernel removes the
              temp dir itself too: the boot may have died while it started.

Lifetime: the kernel also watches the task's main process (found by its OSMO_OUTPUT and start
time) and, should the control plane not have said why within END_GRACE seconds of its end,
exits with its own message, so a kernel never outlives its task. And it exits once no control
connection has been open for `orphan_after` seconds (ORPHAN_AFTER unless the boot's input says
otherwise): the control plane gives a kernel up after RECONNECT_FOR seconds without one
(kernel.py), and one whose start it abandoned (it stopped, or was killed, while the kernel
booted) never connects; no one else could reach such a kernel, nor end it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
NO_IPYKERNEL = 3
START_WAIT = 25.0  # seconds for the kernel to import ipykernel and bind its ports
END_GRACE = 5.0  # seconds the control plane has to explain a task's end before we do
ORPHAN_AFTER = 90.0  # seconds with no control connection: no control plane knows the kernel


def boot() -> int:
    cfg = json.loads(sys.stdin.read())
    if importlib.util.find_spec("ipykernel") is None:  # found, not imported: the kernel will
        sys.stderr.write(f"no ipykernel in the task's Python ({sys.executable})\n")
        return NO_IPYKERNEL
    socks = []
    for _ in range(len(CHANNELS) + 1):  # held together: six distinct free ports
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    d = tempfile.mkdtemp(prefix="osmo-kernel-")  # 0700
    try:
        child = _start(cfg, ports, d)
    finally:  # the kernel has read it all once it listens (or it failed): nothing stays
        shutil.rmtree(d, ignore_errors=True)
    if child is None:
        return 1
    info = _connection(cfg, ports)
    out = {"pid": child.pid, "ports": info, "osmo_port": ports[-1], "python": sys.executable}
    print(json.dumps(out), flush=True)
    return 0


def _connection(cfg: dict[str, Any], ports: list[int]) -> dict[str, object]:
    # any Python 3
    info: dict[str, object] = {f"{c}_port": ports[i] for i, c in enumerate(CHANNELS)}
    info.update(
        ip="127.0.0.1",
        transport="tcp",
        key=cfg["key"],
        signature_scheme=cfg.get("signature_scheme", "hmac-sha256"),
        kernel_name="",
    )
    return info


def _start(cfg: dict[str, Any], ports: list[int], d: str) -> subprocess.Popen[bytes] | None:
    """The kernel, started from the files it needs in `d`, once it listens; None (with the
    reason on stderr) when it does not come up."""
    conn = os.path.join(d, "kernel.json")
    fd = os.open(conn, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(_connection(cfg, ports), f)
    script = os.path.join(d, "osmo_kernel.py")
    with open(script, "w") as f:
        f.write(cfg["source"])
    task_pid = str(_task_pid() or 0)
    orphan_after = str(float(cfg.get("orphan_after", ORPHAN_AFTER)))
    with open(os.path.join(d, "kernel.log"), "ab") as log:  # the child keeps its own copy
        child = subprocess.Popen(
            [sys.executable, script, "kernel", conn, str(ports[-1]), task_pid, orphan_after],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # not in this exec's process group: survives its end
        )
    deadline = time.monotonic() + START_WAIT
    # the kernel opens it after reading the connection file and binding its ZMQ sockets
    while not _listening(ports[-1]):
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            child.wait()
            with open(os.path.join(d, "kernel.log"), "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace")
            sys.stderr.write(f"the kernel did not come up (exit {child.poll()}):\n{tail}\n")
            return None
        time.sleep(0.02)
    return child


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _task_pid() -> int | None:
    """The task's main process: the oldest process of another session sharing our OSMO_OUTPUT
    (exec sessions like this one start later and each in its own session)."""
    ours = os.environ.get("OSMO_OUTPUT")
    if not ours:
        return None
    me = os.getsid(0)
    best: tuple[int, int] | None = None
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            if f"OSMO_OUTPUT={ours}".encode() not in env or os.getsid(pid) == me:
                continue
            with open(f"/proc/{pid}/stat") as f:
                start = int(f.read().rsplit(")", 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            continue
        if best is None or start < best[0]:
            best = (start, pid)
    return best[1] if best else None


# --- the kernel process ---------------------------------------------------------------------

_ending = threading.Lock()
_controls = threading.Lock()  # guards the two below
_open_controls = 0
_alone_since = time.monotonic()  # when the last control connection closed (or the start)


def _end(reason: str) -> None:
    """Tell whoever is running a cell why the kernel goes, then go."""
    if not _ending.acquire(blocking=False):
        return
    try:
        sys.stderr.write(f"\n[osmo] {reason}\n")
        sys.stderr.flush()
        time.sleep(0.3)  # the IOPub thread sends it
    finally:
        os._exit(0)


def _serve_control(port: int, folder: str) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)
    # Up: the boot reads the folder no more (only a kernel that never listens has its log
    # read). The boot removes it too, but it may have died meanwhile (its exec dropped).
    shutil.rmtree(folder, ignore_errors=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_control_conn, args=(conn,), daemon=True).start()


def _control_conn(conn: socket.socket) -> None:
    global _open_controls, _alone_since
    with _controls:
        _open_controls += 1
    try:
        _control_lines(conn)
    finally:
        with _controls:
            _open_controls -= 1
            if not _open_controls:
                _alone_since = time.monotonic()


def _watch_orphan(after: float) -> None:
    while True:
        time.sleep(1.0)
        with _controls:
            alone = not _open_controls and time.monotonic() - _alone_since > after
        if alone:
            _end(f"no control plane has reached this kernel for {after:g} s; it is shutting down")


def _control_lines(conn: socket.socket) -> None:
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            try:
                msg = json.loads(line)
                if msg.get("op") == "signal":
                    os.killpg(os.getpgid(0), int(msg["signal"]))
                elif msg.get("op") == "end":
                    _end(str(msg.get("reason") or "the task ended"))
            except (ValueError, KeyError, TypeError, OSError) as e:
                # the kernel's own stderr (sys.stderr is the running cell's); a process started
                # by `boot` always has one
                sys.__stderr__.write(  # type: ignore[union-attr]
                    f"osmo kernel: bad control message {line[:200]!r}: {e}\n"
                )


def _watch_task(pid: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            continue
    time.sleep(END_GRACE)  # the control plane usually says why first (status, exit code)
    _end("the task's process has ended; this kernel is shutting down")


def kernel(conn: str, osmo_port: int, task_pid: int, orphan_after: float) -> None:
    del sys.path[0]  # our temp dir; as ipykernel_launcher drops its own entry
    from ipykernel.kernelapp import IPKernelApp

    signal.signal(signal.SIGTERM, lambda *_: _end("the kernel was asked to stop"))
    app = IPKernelApp.instance()
    app.initialize(["-f", conn])
    folder = os.path.dirname(conn)
    threading.Thread(target=_serve_control, args=(osmo_port, folder), daemon=True).start()
    threading.Thread(target=_watch_orphan, args=(orphan_after,), daemon=True).start()
    if task_pid:
        threading.Thread(target=_watch_task, args=(task_pid,), daemon=True).start()
    app.start()


if __name__ == "__main__":
    if sys.argv[1] == "boot":
        sys.exit(boot())
    kernel(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
