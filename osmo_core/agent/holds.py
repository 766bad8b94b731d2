"""Held attempts: the command ended, but its environment stays for the user to exec into.

`LaunchRequest.hold` ("success": interactive tasks, "failure": debug: on-failure, "always")
keeps an attempt whose command ended. A holder process (`sleep`) is started in the task's own
workdir with the task's own environment, in a new process group, and becomes the attempt's
pid, so exec (ssh_session.py) finds a running attempt with the task's context; a `held` event
says so and held.json records it. `release` continues as the command's end would have
(outputs, then `exited`); `cancel` ends it with the command's exit code, no outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from subprocess import DEVNULL
from typing import TYPE_CHECKING

from .containers import container_pid, remove_container
from .logfile import now
from .workdir import why

if TYPE_CHECKING:
    from .attempt import Attempt

HELD = "held.json"  # in a held attempt's folder: the command's exit, while the hold lasts
# What a held attempt runs: nothing, in the task's cwd and environment (exec reads them from it);
# a task in a container: a container of its image, mounts and environment running HOLDER.
HOLDER = ["sleep", "2147483647"]
HOLD_START = 30.0  # seconds for a holding container to run
_HOLDER = [shutil.which("sleep") or "/bin/sleep", HOLDER[1]]


async def _container_up(att: Attempt, proc: asyncio.subprocess.Process) -> bool:
    """Whether the holding container runs (exec needs it), asked until HOLD_START."""
    assert att.runtime and att.container
    for _ in range(int(HOLD_START / 0.1)):
        if proc.returncode is not None:
            return False
        if await container_pid(att.runtime, att.container):
            return True
        await asyncio.sleep(0.1)
    return False


def holds(hold: str | None, code: int) -> bool:
    """Whether `hold` (LaunchRequest.hold) keeps an attempt whose command exited `code`."""
    return hold == "always" or hold == ("success" if code == 0 else "failure")


def unhold(att: Attempt, *, complete: bool, holder_failed: bool = False) -> None:
    """End the hold: `complete` as the command ended (outputs), else with its exit code."""
    assert att.held is not None
    code, sig = att.held
    att.held = None
    if att.holder is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(att.holder.pid, signal.SIGKILL)
        att.holder = None  # a holding container outlives its client: removed at the end
    if not holder_failed:
        att.system("hold released" + ("" if complete else " without completing"))
    att.close_log()
    if complete and att.stager is not None:
        att.sup.stage_out(att, code, sig)
        return
    if att.staging is not None:  # the periodic checkpoints
        att.staging.cancel()
    att.sup.ended(att, {"state": "exited", "exit_code": code, "signal": sig})


async def hold(att: Attempt, code: int, sig: int | None) -> None:
    """The command ended and the hold applies: start the holder, record and announce it."""
    att.held = (code, sig)
    if att.runtime and att.container:  # the command's, ended: the holder takes its name
        await remove_container(att.runtime, att.container)
    try:
        proc = await asyncio.create_subprocess_exec(
            *(att.holder_argv or _HOLDER),
            cwd=att.work,
            env=att.env,
            stdin=DEVNULL,
            stdout=DEVNULL,
            stderr=DEVNULL,
            start_new_session=True,
            **({} if att.holder_argv else att.sup.as_task(att)),  # a runtime client: ours
        )
    except OSError as e:
        att.system(f"cannot hold the task ({e}); it ends now")
        unhold(att, complete=True, holder_failed=True)
        return
    att.holder = proc
    if att.runtime and att.container and not await _container_up(att, proc):
        att.system(f"cannot hold the task (its container did not start in {HOLD_START:g} s)")
        unhold(att, complete=True, holder_failed=True)
        return
    att.pid = proc.pid
    what = "exited 0" if code == 0 else f"failed (exit code {code})"
    att.system(f"command {what}; holding the task's environment")
    ts = now()
    try:
        (att.dir / HELD).write_text(json.dumps({"exit_code": code, "signal": sig, "ts": ts}))
    except OSError as e:  # the hold lives in memory: only a record of it is missing
        att.sup.ends.trouble(att.key, f"storage: hold record not written ({why(e)})")
    att.sup.emit({"ev": "held", "key": att.key, "exit_code": code, "signal": sig, "ts": ts})
    if att.cancel_pending:  # canceled while the holder was starting
        unhold(att, complete=False)
