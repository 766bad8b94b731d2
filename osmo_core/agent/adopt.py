"""A restarted agent takes over the containers its predecessor left running.

A task's container outlives the runtime client (`<rt> run`) that was its attempt's process,
and is never started with `--rm`, so its exit code stays readable after it ends. An agent that
finds an attempt without an exit record whose container (named in the attempt's record,
labelled with this agent's root) still exists, running or exited, adopts it instead of
recording the attempt lost: an `Adopted` attempt whose process follows the container's log
(`<rt> logs -f`, the lines the predecessor already recorded skipped) and then exits with the
container's exit code (`<rt> wait`). Its log, exit record, outputs, usage, exec and cancel go
on as for any attempt. A held attempt (its command ended, a holder container kept for the user)
is not adopted: its hold lived in its agent's memory.
"""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .attempt import Attempt
from .containers import ADOPT_SCRIPT, LABEL, kill_container, probe_container
from .holds import HELD
from .logfile import MAX_LINE, count_lines
from .protocol import request_from_wire
from .staging import Stager, needs_staging
from .workdir import ATTEMPT, LOG, OUTPUT

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = logging.getLogger("osmo_core.agent")


def recorded_lines(path: Path) -> dict[int, int]:
    """How many lines of stdout (1) and stderr (2) the attempt's log already has: output
    lines, as the container's log counts them (a line longer than MAX_LINE was recorded as
    several, each but the last exactly MAX_LINE long)."""
    counts = {1: 0, 2: 0}
    fds = {b"stdout": 1, b"stderr": 2}
    try:
        with open(path, "rb") as f:
            for raw in f:
                _, stream, text = raw.split(b" ", 2)
                fd = fds.get(stream)
                if fd is not None and len(text) - 1 < MAX_LINE:  # - 1: its newline
                    counts[fd] += 1
    except FileNotFoundError:
        pass
    return counts


class Adopted(Attempt):
    """An attempt whose process reads a running container's log rather than running it: the
    first lines of each stream are the predecessor's (already in the log) and are skipped;
    a cancel's SIGTERM goes to the container itself."""

    skip: dict[int, int]  # lines of stdout (1) and stderr (2) still to skip

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        while self.skip[fd] and data:
            _, nl, data = data.partition(b"\n")
            if nl:  # else the skipped line goes on in the next read
                self.skip[fd] -= 1
        if data:
            super().pipe_data_received(fd, data)

    def _signal(self, sig: int) -> None:
        if sig == signal.SIGTERM and self.runtime and self.container:
            self.sup.background(kill_container(self.runtime, self.container, "TERM"))
            return
        super()._signal(sig)


async def adopt(sup: Supervisor, runtime: str | None, d: Path, container: str) -> bool:
    """Adopt the container of attempt folder `d` (no exit record); False when there is no
    runtime, no such container of this root, or the attempt was held."""
    key = "/".join(d.parts[-3:])
    if runtime is None or (d / HELD).exists():
        return False
    state = await probe_container(runtime, container)
    if state is None or state.get(LABEL) != str(sup.root):
        return False
    record: dict[str, Any] = json.loads((d / ATTEMPT).read_bytes())
    req = request_from_wire({**record["request"], "files": []})  # the files are in place
    notes = [f"agent restarted: re-attached to container {container} ({state['status']})"]
    if req.checkpoints:
        notes.append("its checkpoints are no longer uploaded (the agent that knew them died)")
    if req.hold:
        notes.append("it will not be held when its command ends (the agent that knew how died)")
    att = Adopted(sup, key, d, runtime, container, notes)
    att.skip = recorded_lines(d / LOG)
    att.n = count_lines(d / LOG)  # its log goes on where the predecessor's stopped
    att.work = sup.workspace(key)
    att.memory = req.memory
    att.mask = sup.credentials.masker() or None
    if sup.uids is not None:
        att.identity = sup.uids.of(req.user)
    if needs_staging(req):  # its outputs still go up when it succeeds
        att.stager = Stager(
            key, att.work, req, sup.credentials.load(), att.system, sup.emit, [], att.identity
        )
    sup.running[key] = att
    argv = ["sh", "-c", ADOPT_SCRIPT, "osmo-adopt", runtime, container]
    # OSMO_OUTPUT: an agent killed in its turn has this process killed by its successor
    att.env = {**sup.base_env, "OSMO_OUTPUT": str(att.work / OUTPUT)}  # exec's runtime client too
    await sup.spawn(att, argv, att.work, att.env)
    log.info("attempt %s: re-attached to container %s (%s)", key, container, state["status"])
    return True
