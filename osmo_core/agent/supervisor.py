"""Running attempts: one process group each; its pipes become log lines, its end exit.json.

The launch path is kept lean because per-task overhead must stay near the cost of starting
the user's own process: no thread, no coroutine and no extra process per task. The pipes and
the exit are plain callbacks on one asyncio.SubprocessProtocol per attempt, and the exit is
watched through a pidfd (set up in __main__). Only a task with data to move (url/dataset
inputs, outputs, checkpoints) gets a coroutine: staging.py downloads before the command and
uploads after it, and the attempt ends only once that is done.

Holds (`LaunchRequest.hold`: interactive tasks, debug: on-failure): when the command ends and
the hold applies, the attempt does not end. A holder process (`sleep`) is started in the
task's own workdir with the task's own environment, in a new process group, and becomes the
attempt's pid, so exec (agent/ssh.py) finds a running attempt with the task's context; a
`held` event says so and held.json records it. `release` continues as the command's end would
have (outputs, then `exited`); `cancel` ends it with the command's exit code, no outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from subprocess import DEVNULL, PIPE
from typing import Any, BinaryIO

import psutil

from ..data.credentials import CredentialFile, Masker
from ..data.exit_codes import TransferError
from ..wire import LaunchRequest
from .environment import scrubbed
from .identity import TaskIdentity, UidMap, hand_over, make_dir
from .logfile import MAX_LINE, count_lines, format_line
from .protocol import request_from_wire
from .staging import Stager, needs_staging, task_credentials
from .usage import Sampler
from .workdir import (
    ATTEMPT,
    CREDENTIALS,
    EXIT,
    LOG,
    OUTPUT,
    Prepared,
    PrepareError,
    attempt_dir,
    launch_info,
    prepare,
)

log = logging.getLogger("osmo_core.agent")

Emit = Callable[[dict[str, Any]], None]
PIPE_GRACE = 2.0  # seconds to wait for pipe EOF after the main process exited
HELD = "held.json"  # in a held attempt's folder: the command's exit, while the hold lasts
# What a held attempt runs: nothing, in the task's cwd and environment (exec reads them from it).
_HOLDER = [shutil.which("sleep") or "/bin/sleep", "2147483647"]
_STREAMS = {1: "stdout", 2: "stderr"}
_SIGTERM_EXIT = 128 + signal.SIGTERM  # how an attempt canceled during a transfer ends


def _now() -> float:
    """Seconds, to the microsecond the log keeps, so events and the log agree exactly."""
    return round(time.time(), 6)


class Supervisor:
    def __init__(
        self,
        root: Path,
        emit: Emit,
        runtime: Callable[[], Awaitable[str | None]],
        tasks: Path | None = None,
        uids: UidMap | None = None,
        umask: int = 0o022,
    ):
        """`tasks` and `uids`: task isolation (workdir.py, identity.py); `umask`: the one
        tasks start with (the agent's own is 077)."""
        self.root = root
        self.tasks = tasks
        self.uids = uids
        self.umask = umask
        self.emit = emit
        self.running: dict[str, _Attempt] = {}
        self._runtime = runtime
        self._env = scrubbed(os.environ)  # no control-plane secret (environment.py)
        self._warned_image = False
        self._bg: set[asyncio.Task[None]] = set()
        self.credentials = CredentialFile(root)  # written by the backend; names -> secrets

    def workspace(self, key: str) -> Path:
        """The task's own folder of attempt `key`: its cwd, output/, inputs/..."""
        return attempt_dir(self.tasks if self.tasks is not None else self.root, key)

    def _info(self, key: str, already_known: bool = False) -> Any:
        return launch_info(self.root, key, already_known, self.tasks)

    # --- launch --------------------------------------------------------------------------

    async def launch(self, wire: dict[str, Any]) -> dict[str, Any]:
        req = request_from_wire(wire)
        d = attempt_dir(self.root, req.key)
        if req.key in self.running:
            return vars(self._info(req.key, already_known=True))
        runtime = await self._runtime() if req.image else None
        container = _container_name(req.key) if runtime else None
        info = self._info(req.key)
        d.mkdir(parents=True, exist_ok=True)
        record = {
            "request": {**wire, "files": [{"path": f.path, "mode": f.mode} for f in req.files]},
            "info": vars(info),
            "container": container,
            "ts": _now(),
        }
        try:  # exclusive create: the one check that makes launch idempotent, even across agents
            with open(d / ATTEMPT, "x") as f:
                f.write(json.dumps(record))  # dumps: json.dump is the slow pure-Python path
        except FileExistsError:
            return vars(self._info(req.key, already_known=True))
        w = self.workspace(req.key)

        notes: list[str] = []
        if req.image and runtime is None:
            notes.append(
                f"image {req.image} ignored: no docker/podman on this host; "
                "running the command on the host"
            )
            if not self._warned_image:
                self._warned_image = True
                log.warning(notes[0])
        att = self.running[req.key] = _Attempt(self, req.key, d, runtime, container, notes)
        att.work = w
        att.mask = self.credentials.masker() or None
        att.hold = req.hold
        try:
            secret_env, secret_files = task_credentials(req, self.credentials.load())
        except TransferError as e:
            att.end_early(int(e.code), str(e))
            return vars(info)
        try:
            if self.uids is not None:
                att.identity = self.uids.of(req.user)
                self._make_workspace(w, att.identity)
            private = self.root if att.identity is not None else None
            prep = prepare(w, req, container is not None, secret_files, private)
            if not prep.argv:
                raise PrepareError("the task has no command")
            if att.identity is not None:
                hand_over(w, att.identity)
        except Exception as e:  # anything that keeps it from starting is a start failure
            att.fail_start(str(e))
            return vars(info)
        env = {
            **self._env,
            **prep.env,
            **secret_env,
            "CUDA_VISIBLE_DEVICES": ",".join(map(str, req.gpus)),  # "": a CPU task sees no GPU
            "OSMO_OUTPUT": info.output,  # also how a restarted agent finds orphans (recover)
        }
        if att.identity is not None:  # the agent's home is not the task's to read
            env["HOME"] = str(w)
        att.env = env
        argv = prep.argv
        if runtime and container and req.image:
            argv = _container_argv(
                runtime, container, w, req.image, req.gpus, prep, info.output, list(secret_env)
            )
        if needs_staging(req):
            att.stager = Stager(
                req.key,
                w,
                req,
                self.credentials.load(),
                att.system,
                self.emit,
                prep.checkpoint_dirs,
                att.identity,
            )
            att.staging = asyncio.ensure_future(self._staged(att, req, argv, w, env))
            return vars(info)
        await self._spawn(att, argv, w, env)
        return vars(info)

    def _make_workspace(self, w: Path, owner: TaskIdentity) -> None:
        """TASKS/runs/<wf>/<task>/<retry>: the folders above it searchable (0711), not
        listable, by every task; its own folder the task's alone (0700)."""
        assert self.tasks is not None
        for up in reversed(w.relative_to(self.tasks).parents[:-1]):
            make_dir(self.tasks / up, 0o711)
        make_dir(w, 0o700, owner)

    def as_task(self, att: _Attempt) -> dict[str, Any]:
        """subprocess arguments that start a process as the task's identity (if isolated)."""
        if att.identity is None:
            return {"umask": self.umask}
        ident = att.identity
        return {"user": ident.uid, "group": ident.gid, "extra_groups": [], "umask": 0o077}

    async def _spawn(self, att: _Attempt, argv: list[str], w: Path, env: dict[str, str]) -> None:
        try:
            await asyncio.get_running_loop().subprocess_exec(
                lambda: att,
                *argv,
                cwd=w,
                env=env,
                stdin=DEVNULL,
                stdout=PIPE,
                stderr=PIPE,
                start_new_session=True,  # its own process group: cancel reaches every child
                **self.as_task(att),
            )
        except Exception as e:  # not found, not executable, a NUL in argv...
            att.fail_start(str(e))

    async def _staged(
        self, att: _Attempt, req: LaunchRequest, argv: list[str], d: Path, env: dict[str, str]
    ) -> None:
        """Inputs, then the command (its end continues in `_stage_out`)."""
        assert att.stager is not None
        try:
            await att.stager.inputs()
        except TransferError as e:
            att.end_early(int(e.code), str(e))
            return
        except asyncio.CancelledError:
            att.end_early(_SIGTERM_EXIT, "canceled while downloading inputs", signal.SIGTERM)
            return
        att.staging = None
        if att.identity is not None:  # the downloads (root's) become the task's
            try:
                hand_over(d, att.identity)
            except OSError as e:
                att.fail_start(f"cannot hand the inputs to the task: {e}")
                return
        await self._spawn(att, argv, d, env)
        if req.checkpoints and not att.ended.done():
            att.staging = asyncio.ensure_future(att.stager.checkpoint_loop())

    def stage_out(self, att: _Attempt, code: int, sig: int | None) -> None:
        """The command ended: a last checkpoint, then (if it succeeded) the outputs."""
        if att.staging is not None:
            att.staging.cancel()  # the periodic checkpoints
        att.staging = asyncio.ensure_future(self._stage_out(att, code, sig))

    async def _stage_out(self, att: _Attempt, code: int, sig: int | None) -> None:
        assert att.stager is not None
        message = ""
        try:
            await att.stager.checkpoint()
            if code == 0:
                await att.stager.outputs()
        except TransferError as e:
            att.system(str(e))
            if code == 0:  # a failed command keeps its own exit code
                code, message = int(e.code), str(e)
        except asyncio.CancelledError:
            code, sig, message = _SIGTERM_EXIT, signal.SIGTERM, "canceled while uploading"
            att.system(message)
        att.close_log()
        self.ended(att, {"state": "exited", "exit_code": code, "signal": sig, "message": message})

    # --- cancel / status / stop ------------------------------------------------------------

    def cancel(self, key: str, grace: float) -> None:
        att = self.running.get(key)
        if att is not None:
            att.cancel(grace)

    def release(self, key: str) -> None:
        """The user is done with a held attempt: it ends as its command did (outputs first)."""
        att = self.running.get(key)
        if att is not None and att.held is not None:
            att.unhold(complete=True)

    def hold(self, att: _Attempt, code: int, sig: int | None) -> None:
        task = asyncio.ensure_future(self._hold(att, code, sig))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _hold(self, att: _Attempt, code: int, sig: int | None) -> None:
        att.held = (code, sig)
        try:
            proc = await asyncio.create_subprocess_exec(
                *_HOLDER,
                cwd=att.work,
                env=att.env,
                stdin=DEVNULL,
                stdout=DEVNULL,
                stderr=DEVNULL,
                start_new_session=True,
                **self.as_task(att),
            )
        except OSError as e:
            att.system(f"cannot hold the task ({e}); it ends now")
            att.unhold(complete=True, holder_failed=True)
            return
        att.pid = proc.pid
        att.holder = proc
        what = "exited 0" if code == 0 else f"failed (exit code {code})"
        att.system(f"command {what}; holding the task's environment")
        ts = _now()
        (att.dir / HELD).write_text(json.dumps({"exit_code": code, "signal": sig, "ts": ts}))
        self.emit({"ev": "held", "key": att.key, "exit_code": code, "signal": sig, "ts": ts})
        if att.cancel_pending:  # canceled while the holder was starting
            att.unhold(complete=False)

    def status(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        return {key: self._state(key) for key in keys}

    def _state(self, key: str) -> dict[str, Any]:
        try:
            d = attempt_dir(self.root, key)
        except ValueError as e:
            return {"key": key, "state": "unknown", "message": str(e)}
        info = vars(self._info(key))
        att = self.running.get(key)
        if att is not None and att.held is not None:
            return {
                "key": key,
                "state": "held",
                "pid": att.pid,
                "exit_code": att.held[0],
                "signal": att.held[1],
                "log_lines": att.n,
                "info": info,
            }
        if att is not None:
            return {
                "key": key,
                "state": "running",
                "pid": att.pid,
                "log_lines": att.n,
                "info": info,
            }
        try:
            ended = json.loads((d / EXIT).read_bytes())
        except FileNotFoundError:
            if not (d / ATTEMPT).exists():
                return {"key": key, "state": "unknown"}
            ended = {"state": "lost", "message": "recorded but neither running nor ended"}
            ended["log_lines"] = count_lines(d / LOG)
        return {
            "key": key,
            "state": ended["state"],
            "exit_code": ended.get("exit_code"),
            "signal": ended.get("signal"),
            "message": ended.get("message", ""),
            "log_lines": ended.get("log_lines", 0),
            "info": info,
        }

    async def stop(self, grace: float) -> None:
        """Cancel every running attempt and wait until each has its exit record."""
        atts = list(self.running.values())
        for att in atts:
            att.cancel(grace)
        await asyncio.gather(*(att.ended for att in atts))
        await asyncio.gather(*self._bg)

    async def report_usage(self, every: float) -> None:
        """Forever: every `every` seconds, a `usage` event per running command (not holders,
        not containers: their processes are not ours to read)."""
        samplers: dict[str, Sampler] = {}
        while True:
            await asyncio.sleep(every)
            live = {
                k: a.pid
                for k, a in self.running.items()
                if a.pid is not None and a.held is None and a.container is None
            }
            for k in set(samplers) - set(live):
                del samplers[k]
            for k, pid in live.items():
                if k not in samplers or samplers[k].pid != pid:
                    samplers[k] = Sampler(pid)
            found = await asyncio.to_thread(lambda: {k: s.sample() for k, s in samplers.items()})
            for key, usage in found.items():
                if usage is not None and key in self.running:
                    self.emit({"ev": "usage", "key": key, "ts": _now(), **usage})

    # --- agent restart ---------------------------------------------------------------------

    def recover(self) -> int:
        """Attempts of a previous agent that never got an exit record are lost: their pipes
        broke with that agent, so nobody can collect their output. Kill what is left of them
        and record it. Returns how many there were."""
        orphans = {
            str(self.workspace("/".join(rec.parent.parts[-3:])) / OUTPUT): rec.parent
            for rec in self.root.glob(f"runs/*/*/*/{ATTEMPT}")
            if not (rec.parent / EXIT).exists()
        }
        if not orphans:
            return 0
        _kill_groups_with_output(set(orphans))
        for d in orphans.values():
            key = "/".join(d.parts[-3:])
            log.warning("attempt %s lost: its agent died while it ran", key)
            _write_exit(
                d,
                {
                    "state": "lost",
                    "message": "the agent supervising this attempt died; the task was stopped",
                    "exit_code": None,
                    "signal": None,
                    "ts": _now(),
                    "log_lines": count_lines(d / LOG),
                },
            )
        return len(orphans)

    # --- called by attempts ----------------------------------------------------------------

    def ended(self, att: _Attempt, record: dict[str, Any]) -> None:
        self.running.pop(att.key, None)
        record.update(ts=_now(), log_lines=att.n)
        shutil.rmtree(att.work / CREDENTIALS, ignore_errors=True)  # secrets live no longer
        (att.dir / HELD).unlink(missing_ok=True)
        _write_exit(att.dir, record)  # before the event: a status() after it sees the end
        if record["state"] == "exited":
            ev = {"ev": "exited", "exit_code": record["exit_code"], "signal": record["signal"]}
            if record.get("message"):
                ev["message"] = record["message"]
        else:
            ev = {"ev": "start_failed", "message": record["message"]}
        self.emit({**ev, "key": att.key, "ts": record["ts"]})
        att.ended.set_result(None)

    def remove_container(self, runtime: str, name: str) -> None:
        async def rm() -> None:
            proc = await asyncio.create_subprocess_exec(
                runtime, "rm", "-f", name, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
            )
            await proc.wait()

        task = asyncio.ensure_future(rm())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)


class _Attempt(asyncio.SubprocessProtocol):
    """One attempt's process: callbacks from asyncio turn its output and exit into records."""

    def __init__(
        self,
        sup: Supervisor,
        key: str,
        d: Path,
        runtime: str | None,
        container: str | None,
        notes: list[str],
    ):
        self.sup, self.key, self.dir = sup, key, d  # dir: the agent's records
        self.work = d  # the task's own folder (apart from `dir` with isolation)
        self.identity: TaskIdentity | None = None  # whom it runs as, when isolated
        self.pid: int | None = None
        self.n = 0  # log lines so far
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runtime, self.container = runtime, container
        self._notes = notes  # system lines, logged once started so `started` comes first
        self._log: BinaryIO | None = None  # opened at the first line: `true` writes none
        self._transport: asyncio.SubprocessTransport | None = None
        self._partial = {1: b"", 2: b""}
        self._open_pipes = {1, 2}
        self._returncode: int | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._early_cancel: float | None = None
        self._done = False
        self.mask: Masker | None = None  # hides credential values in its log
        self.stager: Stager | None = None  # set when it has data to move
        self.staging: asyncio.Task[None] | None = None  # a transfer in progress
        self._canceled = False
        self.hold: str | None = None  # LaunchRequest.hold
        self.env: dict[str, str] = {}  # the command's environment (the holder gets it too)
        self.held: tuple[int, int | None] | None = None  # the command's (exit code, signal)
        self.holder: asyncio.subprocess.Process | None = None
        self.cancel_pending = False  # canceled while the holder was starting

    # asyncio calls these, in this order: connection_made, then data / pipe EOFs / exit.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._transport = transport
        self.pid = transport.get_pid()
        self.sup.emit({"ev": "started", "key": self.key, "pid": self.pid, "ts": _now()})
        for note in self._notes:
            self._line("system", note, _now())
        self._flush()
        if self._early_cancel is not None:
            self.cancel(self._early_cancel)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self._done:
            return
        stream, ts = _STREAMS[fd], _now()
        *lines, rest = (self._partial[fd] + data).split(b"\n")
        for raw in lines:
            for i in range(0, max(len(raw), 1), MAX_LINE):
                self._line(stream, raw[i : i + MAX_LINE].decode("utf-8", "replace"), ts)
        while len(rest) > MAX_LINE:
            self._line(stream, rest[:MAX_LINE].decode("utf-8", "replace"), ts)
            rest = rest[MAX_LINE:]
        self._partial[fd] = rest
        self._flush()  # every line reaches the file before we go back to the loop

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if self._done:
            return
        rest, self._partial[fd] = self._partial[fd], b""
        if rest:  # a last line without a newline
            self._line(_STREAMS[fd], rest.decode("utf-8", "replace"), _now())
            self._flush()
        self._open_pipes.discard(fd)
        self._maybe_finish()

    def process_exited(self) -> None:
        assert self._transport is not None
        self._returncode = self._transport.get_returncode()
        if self._open_pipes:  # a background child still holds them: do not wait forever
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(PIPE_GRACE, self._pipes_held))
        self._maybe_finish()

    # ours
    def system(self, text: str) -> None:
        self._line("system", text, _now())
        self._flush()

    def _line(self, stream: str, text: str, ts: float) -> None:
        if self.mask is not None:
            text = self.mask(text)
        self.n += 1
        if self._log is None:
            self._log = open(self.dir / LOG, "ab")  # noqa: SIM115 - closed when it ends
        self._log.write(format_line(ts, stream, text))
        self.sup.emit(
            {"ev": "log", "key": self.key, "n": self.n, "ts": ts, "stream": stream, "text": text}
        )

    def _flush(self) -> None:
        if self._log is not None:
            self._log.flush()

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _pipes_held(self) -> None:
        self._kill()
        # Give the pipes a moment to drain and close; a holder that left the group (setsid)
        # would keep them open forever.
        self._timers.append(asyncio.get_running_loop().call_later(0.2, self._finish))

    def _maybe_finish(self) -> None:
        if self._returncode is not None and not self._open_pipes:
            self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        for timer in self._timers:
            timer.cancel()
        self._signal(signal.SIGKILL)  # whatever is left of the group goes with the task
        self.close_log()
        assert self._transport is not None and self._returncode is not None
        self._transport.close()
        rc = self._returncode
        code, sig = (128 - rc, -rc) if rc < 0 else (rc, None)
        if self._holds(code) and not self._canceled:
            self.sup.hold(self, code, sig)
            return
        if self.stager is not None and not self._canceled:
            self.sup.stage_out(self, code, sig)
            return
        if self.staging is not None:  # the periodic checkpoints of a canceled task
            self.staging.cancel()
        self.sup.ended(self, {"state": "exited", "exit_code": code, "signal": sig})

    def _holds(self, code: int) -> bool:
        return self.hold == "always" or self.hold == ("success" if code == 0 else "failure")

    def unhold(self, *, complete: bool, holder_failed: bool = False) -> None:
        """End the hold: `complete` as the command ended (outputs), else with its exit code."""
        assert self.held is not None
        code, sig = self.held
        self.held = None
        if self.holder is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.holder.pid, signal.SIGKILL)
            self.holder = None
        if not holder_failed:
            self.system("hold released" + ("" if complete else " without completing"))
        self.close_log()
        if complete and self.stager is not None:
            self.sup.stage_out(self, code, sig)
            return
        if self.staging is not None:  # the periodic checkpoints
            self.staging.cancel()
        self.sup.ended(self, {"state": "exited", "exit_code": code, "signal": sig})

    def end_early(self, code: int, message: str, sig: int | None = None) -> None:
        """End an attempt whose command never ran (a transfer or a credential failed)."""
        self._done = True
        self.system(message)
        self.close_log()
        self.sup.ended(
            self, {"state": "exited", "exit_code": code, "signal": sig, "message": message}
        )

    def fail_start(self, message: str) -> None:
        self._done = True
        self._line("system", f"could not start: {message}", _now())
        self.close_log()
        self.sup.ended(self, {"state": "failed_start", "message": message})

    def cancel(self, grace: float) -> None:
        self._canceled = True
        if self.held is not None:
            if self.holder is None:
                self.cancel_pending = True
            else:
                self.unhold(complete=False)
            return
        if (self.staging is not None and not self.staging.done() and self.pid is None) or (
            self._done and self.staging is not None
        ):
            self.staging.cancel()  # a transfer before the command started or after it ended
            return
        if self._done:
            return
        if self.pid is None:  # still being spawned
            self._early_cancel = grace
            return
        if grace <= 0:
            self._kill()
            return
        self._signal(signal.SIGTERM)  # a container client passes it on to the container
        self._timers.append(asyncio.get_running_loop().call_later(grace, self._kill))

    def _kill(self) -> None:
        self._signal(signal.SIGKILL)
        if self._runtime and self.container:  # SIGKILL of the client leaves the container
            self.sup.remove_container(self._runtime, self.container)

    def _signal(self, sig: int) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)


def _write_exit(d: Path, record: dict[str, Any]) -> None:
    tmp = d / (EXIT + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, d / EXIT)


def _kill_groups_with_output(outputs: set[str]) -> None:
    """SIGKILL the process group of every process whose OSMO_OUTPUT is one of `outputs`.

    Matching the environment (rather than trusting an old pid file) cannot hit an unrelated
    process that reused the pid."""
    own = os.getpgrp()
    for proc in psutil.process_iter(["environ"]):
        env = proc.info.get("environ") or {}
        if env.get("OSMO_OUTPUT") not in outputs:
            continue
        try:
            pgid = os.getpgid(proc.pid)
            if pgid != own:
                os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _container_name(key: str) -> str:
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"osmo-{key.replace('/', '-')}-{digest}"


def _container_argv(
    runtime: str,
    name: str,
    d: Path,
    image: str,
    gpus: list[int],
    prep: Prepared,
    output: str,
    secret_names: list[str],
) -> list[str]:
    """`<rt> run` with the workdir at the same path inside, so resolved paths stay valid.
    CUDA_VISIBLE_DEVICES is left to the runtime: inside, the given GPUs are renumbered."""
    argv = [runtime, "run", "--rm", "--name", name, "-v", f"{d}:{d}", "-w", str(d)]
    for host, inside in prep.mounts:
        argv += ["-v", f"{host}:{inside}"]
    for k, v in {**prep.env, "OSMO_OUTPUT": output}.items():
        argv += ["-e", f"{k}={v}"]
    for k in secret_names:  # the value comes from the client's environment, not its argv
        argv += ["-e", k]
    if gpus and runtime == "docker":
        argv += ["--gpus", "device=" + ",".join(map(str, gpus))]
    elif gpus:
        argv += [f"--device=nvidia.com/gpu={g}" for g in gpus]
    return [*argv, image, *prep.argv]
