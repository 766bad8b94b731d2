"""`python -m osmo_core.agent.pod --dir /osmo`: the agent of one Kubernetes pod.

The pod's task container runs this in place of the task's command (the Kubernetes backend's
manifest, backends/kubernetes/agent.py). Under DIR, volumes that manifest mounts:

    DIR/agent   the agent's Python (an init container copied it from the agent image)
    DIR/secret  the attempt's Secret: dialhome.json (where to dial, the control plane's client
                key, this pod's agent id), ssh_host_key (made by the control plane, which
                expects it), credentials.json (only the credentials the task names)
    DIR/run     the agent's root: its socket, the attempt's workdir and durable log

It is the host agent with one task, in the task's own image, GPUs and network: it dials home,
the control plane launches the attempt over that connection (staging, logs, holds, exec,
port-forward, kernels as on any host), and it exits once the control plane has collected the
end (a `shutdown`), or `--linger` seconds after it with no client. Its exit status is the
task's, so the pod's phase agrees with the task.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from ..data.credentials import FILE as CREDENTIALS
from ..wire import DIALHOME
from .dialhome import HOST_KEY
from .environment import scrub
from .server import AgentServer
from .workdir import EXIT

SOCKET = "agent.sock"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m osmo_core.agent.pod", description=__doc__)
    parser.add_argument("--dir", required=True, help="where the pod's osmo volumes are mounted")
    parser.add_argument(
        "--linger",
        type=float,
        default=600.0,
        help="seconds to wait, with no client, for the control plane (before and after the task)",
    )
    args = parser.parse_args(argv)
    scrub()  # as the host agent: no control-plane secret reaches the task (environment.py)
    base = Path(args.dir)
    root = base / "run"
    root.mkdir(parents=True, exist_ok=True)
    for name, mode in ((DIALHOME, 0o644), (HOST_KEY, 0o600), (CREDENTIALS, 0o600)):
        src = base / "secret" / name
        if src.exists():  # Secret volumes are read-only symlinks: copy what the agent owns
            shutil.copyfile(src, root / name)
            os.chmod(root / name, mode)
    logging.basicConfig(  # the container's stderr: `kubectl logs -c task` shows the agent
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s osmo-pod-agent %(levelname)s %(message)s",
    )
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    asyncio.run(AgentServer(root, str(root / SOCKET), args.linger).serve())
    code = exit_status(root)
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)  # as the host agent: a stuck transfer thread must not keep the pod


def exit_status(root: Path) -> int:
    """The attempt's exit code (0-255); 1 when it never ended here (never launched: the
    control plane did not reach this agent)."""
    records = sorted((root / "runs").glob(f"*/*/*/{EXIT}"))
    if not records:
        print(
            "osmo pod agent: no task was launched here (did the control plane's dial-home "
            "address reach this pod? see dialhome.json)",
            file=sys.stderr,
        )
        return 1
    code = json.loads(records[-1].read_text()).get("exit_code")
    return code if isinstance(code, int) and 0 <= code < 256 else 1


if __name__ == "__main__":
    sys.exit(main())
