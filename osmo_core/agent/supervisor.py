"""The attempts of one agent: launch, cancel, release, status, usage, stop.

`launch` is idempotent per attempt key (an exclusive create of the attempt's record, even
across agents), prepares the workdir (workdir.py), picks host or container (containers.py) and
starts the command as its own process group, whose pipes and exit an `Attempt` (attempt.py)
turns into log lines and an exit record. The launch path stays lean: only a task with data to
move (url/dataset inputs, outputs, checkpoints) gets a coroutine, in which staging.py downloads
before the command and uploads after it; the attempt ends only once that is done. Holds are
holds.py's; what a previous agent left behind is orphans.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from subprocess import DEVNULL, PIPE
from typing import Any

from ..data.credentials import CredentialFile
from ..data.transfer import TransferError
from ..wire import LaunchInfo, LaunchRequest
from .attempt import Attempt
from .containers import (
    PullError,
    Removals,
    container_argv,
    container_name,
    container_pid,
    ensure_image,
    not_enforced,
    registry_auth,
    user_of,
)
from .ends import Ends
from .environment import scrubbed
from .holds import HOLDER, unhold
from .identity import TaskIdentity, UidMap, hand_over, make_dir
from .logfile import count_lines, now
from .protocol import RequestError, request_from_wire
from .staging import Stager, needs_staging, task_credentials
from .usage import Sampler
from .workdir import (
    ATTEMPT,
    CREDENTIALS,
    EXIT,
    LOG,
    PrepareError,
    attempt_dir,
    launch_info,
    prepare,
    why,
)

log = logging.getLogger("osmo_core.agent")

Emit = Callable[[dict[str, Any]], None]
LAUNCH_RETRIES = (0.5, 1.0, 2.0, 4.0)  # seconds before each retry of a refused attempt record
_SIGTERM_EXIT = 128 + signal.SIGTERM  # how an attempt canceled during a transfer ends


async def _create_record(key: str, d: Path, record: dict[str, Any]) -> None:
    """The attempt's record, created exclusively (FileExistsError: launched before). A disk
    that refuses it (read-only, full, failing) gets a few seconds to come back; then the
    launch fails, saying where and why."""
    for delay in (*LAUNCH_RETRIES, None):
        created = False
        try:
            d.mkdir(parents=True, exist_ok=True)
            with open(d / ATTEMPT, "x") as f:
                created = True
                f.write(json.dumps(record))  # dumps: json.dump is the slow pure-Python path
            return
        except FileExistsError:
            raise
        except OSError as e:
            if created:  # a half-written record would read as a lost attempt
                with contextlib.suppress(OSError):
                    (d / ATTEMPT).unlink()
            if delay is None:
                raise RequestError(
                    f"cannot record attempt {key} in {d}: {why(e)} "
                    f"(retried for {sum(LAUNCH_RETRIES):g} s)"
                ) from None
            await asyncio.sleep(delay)


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
        self.running: dict[str, Attempt] = {}
        self.ends = Ends(emit)  # ended attempts, until durable and acknowledged (ends.py)
        self._runtime = runtime
        # the environment every task starts from: no control-plane secret (environment.py)
        self.base_env = scrubbed(os.environ)
        self._warned_image = False
        self._images: dict[tuple[str, str], float] = {}  # (runtime, image) -> seen here at
        self._bg: set[asyncio.Task[None]] = set()
        self.credentials = CredentialFile(root)  # written by the backend; names -> secrets
        self.removals = Removals()  # ended attempts' containers

    def workspace(self, key: str) -> Path:
        """The task's own folder of attempt `key`: its cwd, output/, inputs/..."""
        return attempt_dir(self.tasks if self.tasks is not None else self.root, key)

    def _credentials(self, req: LaunchRequest) -> dict[str, dict[str, Any]]:
        """The configured credentials and, over them, the task owner's own (its request's)."""
        return {**self.credentials.load(), **req.secrets}

    def _info(self, key: str, already_known: bool = False) -> LaunchInfo:
        return launch_info(self.root, key, already_known, self.tasks)

    # --- launch --------------------------------------------------------------------------

    async def launch(self, wire: dict[str, Any]) -> dict[str, Any]:
        req = request_from_wire(wire)
        d = attempt_dir(self.root, req.key)
        if req.key in self.running:
            return vars(self._info(req.key, already_known=True))
        contained = req.image is not None and req.containers != "off"
        runtime = await self._runtime() if contained else None
        container = container_name(req.key, self.root) if runtime else None
        info = self._info(req.key)
        record = {
            "request": {  # a record: names, never contents or secrets
                **wire,
                "files": [{"path": f.path, "mode": f.mode} for f in req.files],
                "secrets": sorted(req.secrets),
            },
            "info": vars(info),
            "container": container,
            "ts": now(),
        }
        try:  # exclusive create: the one check that makes launch idempotent, even across agents
            await _create_record(req.key, d, record)
        except FileExistsError:
            return vars(self._info(req.key, already_known=True))
        w = self.workspace(req.key)

        notes: list[str] = not_enforced(req) if container else []
        if contained and runtime is None and req.containers == "auto":
            notes.append(
                f"image {req.image} ignored: no docker/podman answers on this host; "
                "running the command on the host"
            )
            if not self._warned_image:  # the agent's log says it once; each task's log too
                self._warned_image = True
                log.warning(notes[-1])
        att = self.running[req.key] = Attempt(self, req.key, d, runtime, container, notes)
        att.memory = req.memory
        att.work = w
        att.mask = self.credentials.masker(req.secrets.values()) or None
        att.hold = req.hold
        if contained and runtime is None and req.containers == "required":
            att.fail_start(
                f"image {req.image}: its pool requires a container (containers: required) "
                "and no docker/podman answers on this host"
            )
            return vars(info)
        try:
            secret_env, secret_files = task_credentials(req, self._credentials(req))
        except TransferError as e:
            att.end_early(int(e.code), str(e))
            return vars(info)
        att.secret_files = bool(secret_files)
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
            **self.base_env,
            **prep.env,
            **secret_env,
            "CUDA_VISIBLE_DEVICES": ",".join(map(str, req.gpus)),  # "": a CPU task sees no GPU
            "OSMO_OUTPUT": info.output,  # also how a restarted agent finds orphans (recover)
        }
        if att.identity is not None:  # the agent's home is not the task's to read
            env["HOME"] = str(w)
        att.env = env
        argv = prep.argv
        if runtime and container:
            args = (runtime, container, self.root, w, req, prep, list(secret_env))
            try:
                argv = container_argv(*args, user_of(att.identity))
                if req.hold:  # the held environment: the same container, doing nothing
                    att.holder_argv = container_argv(*args, user_of(att.identity), HOLDER)
            except ValueError as e:
                att.fail_start(str(e))
                return vars(info)
        if needs_staging(req):
            att.stager = Stager(
                req.key,
                w,
                req,
                self._credentials(req),
                att.system,
                self.emit,
                prep.checkpoint_dirs,
                att.identity,
            )
        if runtime and container:  # the image first, while the task is still initializing
            att.staging = asyncio.ensure_future(self._pull(att, runtime, req, argv, w, env))
            return vars(info)
        if att.stager is not None:
            att.staging = asyncio.ensure_future(self._staged(att, req, argv, w, env))
            return vars(info)
        await self.spawn(att, argv, w, env)
        return vars(info)

    async def _pull(
        self,
        att: Attempt,
        runtime: str,
        req: LaunchRequest,
        argv: list[str],
        w: Path,
        env: dict[str, str],
    ) -> None:
        """The task's image, pulled if it is not here; then on as any task."""
        assert req.image is not None
        auth = registry_auth(req.image, self._credentials(req))
        auth_dir = att.dir / "registry-auth" if auth else None
        try:
            if auth_dir is not None and auth is not None:  # root's, 0700, gone after the pull
                auth_dir.mkdir(mode=0o700, exist_ok=True)
                for name, content in auth.items():
                    fd = os.open(auth_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "w") as f:
                        f.write(content)
            await ensure_image(runtime, req.image, auth_dir, att.system, self._images)
        except PullError as e:
            att.fail_start(str(e), reason="image_pull")
            return
        except asyncio.CancelledError:
            att.end_early(_SIGTERM_EXIT, "canceled while pulling its image", signal.SIGTERM)
            return
        finally:
            if auth_dir is not None:
                shutil.rmtree(auth_dir, ignore_errors=True)
        if att.stager is not None:  # att.staging stays this task: cancel reaches the inputs
            await self._staged(att, req, argv, w, env)
        else:
            att.staging = None
            await self.spawn(att, argv, w, env)

    def _make_workspace(self, w: Path, owner: TaskIdentity) -> None:
        """TASKS/runs/<wf>/<task>/<retry>: the folders above it searchable (0711), not
        listable, by every task; its own folder the task's alone (0700)."""
        assert self.tasks is not None
        for up in reversed(w.relative_to(self.tasks).parents[:-1]):
            make_dir(self.tasks / up, 0o711)
        make_dir(w, 0o700, owner)

    def as_task(self, att: Attempt) -> dict[str, Any]:
        """subprocess arguments that start a process as the task's identity (if isolated)."""
        if att.identity is None:
            return {"umask": self.umask}
        ident = att.identity
        return {"user": ident.uid, "group": ident.gid, "extra_groups": [], "umask": 0o077}

    async def spawn(self, att: Attempt, argv: list[str], w: Path, env: dict[str, str]) -> None:
        """Start `argv` as `att`'s process: its own session, as the task's user unless a
        container's runtime runs it. A launch (after its inputs, if any) and adopt.py's
        re-attach to a running container use it."""
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
                # a runtime's client is the agent's; the container runs as the task (`--user`)
                **({} if att.container else self.as_task(att)),
            )
        except Exception as e:  # not found, not executable, a NUL in argv...
            att.fail_start(str(e))

    async def _staged(
        self, att: Attempt, req: LaunchRequest, argv: list[str], d: Path, env: dict[str, str]
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
        await self.spawn(att, argv, d, env)
        if req.checkpoints and not att.ended.done():
            att.staging = asyncio.ensure_future(att.stager.checkpoint_loop())

    def stage_out(
        self, att: Attempt, code: int, sig: int | None, until: float | None = None
    ) -> None:
        """The command ended: a last checkpoint, then (if it succeeded) the outputs. `until`:
        it was stopped (a cancel, a preemption), so only the checkpoint goes, by that loop
        time (the end of its grace, when it would have been SIGKILLed)."""
        if att.staging is not None:
            att.staging.cancel()  # the periodic checkpoints
        att.staging = asyncio.ensure_future(self._stage_out(att, code, sig, until))

    async def _stage_out(
        self, att: Attempt, code: int, sig: int | None, until: float | None
    ) -> None:
        assert att.stager is not None
        message = att.exit_message
        try:
            if until is None:
                await att.stager.checkpoint()
                if code == 0:
                    await att.stager.outputs()
            else:
                left = until - asyncio.get_running_loop().time()
                await asyncio.wait_for(att.stager.checkpoint(), max(left, 0.0))
        except TimeoutError:
            att.system("last checkpoint not uploaded: the grace period ran out")
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
            unhold(att, complete=True)

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` on its own; `stop` waits for it."""
        task = asyncio.ensure_future(work)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

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
        try:  # memory first: the disk may not have it (yet)
            ended = self.ends.records.get(key) or json.loads((d / EXIT).read_bytes())
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
            "reason": ended.get("reason", ""),
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
        self.ends.stop()

    async def report_usage(self, every: float) -> None:
        """Forever: every `every` seconds, a `usage` event per running command (not holders;
        a container's: the tree of its first process, as the host sees it)."""
        samplers: dict[str, Sampler] = {}
        while True:
            await asyncio.sleep(every)
            live = {}
            for k, a in list(self.running.items()):
                if a.pid is None or a.held is not None:
                    continue
                if a.runtime and a.container and a.inner_pid is None:
                    a.inner_pid = await container_pid(a.runtime, a.container)  # once started
                if pid := (a.inner_pid if a.container else a.pid):
                    live[k] = pid
            for k in set(samplers) - set(live):
                del samplers[k]
            for k, pid in live.items():
                if k not in samplers or samplers[k].pid != pid:
                    samplers[k] = Sampler(pid)
            found = await asyncio.to_thread(lambda: {k: s.sample() for k, s in samplers.items()})
            for key, usage in found.items():
                if usage is not None and key in self.running:
                    self.emit({"ev": "usage", "key": key, "ts": now(), **usage})

    # --- called by attempts ----------------------------------------------------------------

    def ended(self, att: Attempt, record: dict[str, Any]) -> None:
        self.running.pop(att.key, None)
        record.update(ts=now(), log_lines=att.n)
        if att.secret_files:  # secrets live no longer
            shutil.rmtree(att.work / CREDENTIALS, ignore_errors=True)
        if att.runtime and att.container:  # kept until now for its exit code (adopt.py)
            self.background(self.removals.remove(att.runtime, att.container))
        self.ends.record(att.key, att.dir, record)  # before the event: a status() sees the end
        if record["state"] == "exited":
            ev = {"ev": "exited", "exit_code": record["exit_code"], "signal": record["signal"]}
            if record.get("message"):
                ev["message"] = record["message"]
        else:
            ev = {"ev": "start_failed", "message": record["message"]}
            if record.get("reason"):
                ev["reason"] = record["reason"]
        self.emit({**ev, "key": att.key, "ts": record["ts"]})
        att.ended.set_result(None)
