"""`python -m osmo_core.agent --root DIR --socket PATH [--idle-timeout S] [--detach]
[--tasks DIR --uids LO-HI]`

With `--tasks`/`--uids` tasks run isolated: each OSMO user's under a uid of its own from LO-HI,
in a folder under DIR (agent/identity.py, agent/workdir.py); the agent must be able to setuid.
The agent's files are its own: umask 077, ROOT 0700.

One agent per root: it holds an exclusive flock on ROOT/agent.lock for its whole life, so a
second agent started on the same root (two engines racing to start one) exits at once with
status 0. Its pid is in ROOT/agent.pid while it serves; diagnostics go to ROOT/agent.log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import sys
from pathlib import Path

from .environment import scrub
from .identity import (
    UidMap,
    can_setuid,
    make_dir,
    no_new_privileges,
    parse_range,
    secure_dir,
)
from .server import AgentServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m osmo_core.agent", description=__doc__)
    parser.add_argument("--root", required=True, help="data directory (runs/, agent.log)")
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="exit after this many seconds with no task and no client",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="fork and let the parent exit, so the agent is nobody's child",
    )
    parser.add_argument("--tasks", help="isolation: the folder of the tasks' own folders")
    parser.add_argument("--uids", help="isolation: the range of task uids, LO-HI")
    args = parser.parse_args(argv)
    # Whoever started it (the local backend scrubs too; an SSH login or a pod may not): no
    # control-plane secret reaches the tasks, the exec sessions or the kernels it starts.
    scrub()
    if bool(args.tasks) != bool(args.uids):
        parser.error("--tasks and --uids go together")
    uids = parse_range(args.uids) if args.uids else None
    if uids is not None and not can_setuid():
        parser.error("task isolation (--uids) needs root or CAP_SETUID/CAP_SETGID/CAP_CHOWN")
    if uids is not None:
        no_new_privileges()
    if uids is not None and os.geteuid() == 0:
        os.setgroups([])  # root's groups would follow it into SFTP calls made as a task (fsgid)
    task_umask = os.umask(0o077)  # what the agent writes is its own; tasks get theirs back

    root = Path(args.root).resolve()
    secure_dir(root)
    if args.detach and os.fork() > 0:
        os._exit(0)  # the engine reaps this parent at once; init adopts the agent

    lock = open(root / "agent.lock", "a")  # noqa: SIM115 - held until the process exits
    pid_file = root / "agent.pid"
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = pid_file.read_text().strip() if pid_file.exists() else "?"
        print(
            f"osmo agent: another agent (pid {holder}) already serves {root}; exiting",
            file=sys.stderr,
        )
        return 0
    pid_file.write_text(f"{os.getpid()}\n")

    logging.basicConfig(
        filename=root / "agent.log",
        level=logging.INFO,
        format="%(asctime)s agent[%(process)d] %(levelname)s %(message)s",
    )
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        # 3.11 watches each child with a thread; a pidfd watches it from the loop (3.12 default)
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    tasks = Path(args.tasks).resolve() if args.tasks else None
    if tasks is not None:  # every folder down to it searchable by the tasks, not listable
        for p in [*reversed(tasks.parents), tasks]:
            if not p.exists():
                make_dir(p, 0o711)
        os.chmod(tasks, 0o711)
    uid_map = UidMap(root, *uids) if uids else None
    server = AgentServer(root, args.socket, args.idle_timeout, tasks, uid_map, task_umask)
    asyncio.run(server.serve())
    # Ours unless the data dir was deleted and re-created under us (then it is a newer agent's).
    with contextlib.suppress(FileNotFoundError):
        if pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()
    # Every attempt has its exit record by now. A transfer thread of a canceled attempt may
    # still be blocked in a storage call (an endpoint that never answers): do not wait for it.
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
