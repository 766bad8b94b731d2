"""The fault-injection harness: small workflows driven step by step, one fault injected at a
seeded moment, and one check of everything that must hold afterwards.

Every task of `workflows/*.yaml` checks its inputs, writes its output, then runs
`step.sh NAME`: it appends its retry id to `markers/NAME` (a second line with the same id
means an attempt ran twice), writes its pid and waits for the gate file `gates/NAME`. So
once a gate opens only the platform writes (the exit, logs, outputs' upload): a storage fault
then hits the platform's writes, not the user's command. The driver opens gates one by one,
so a fault lands while a chosen task runs ("running") or just as it ends ("ending"), whatever
the load.
The moment (phase, target task, delay) comes from `OSMO_FAULT_SEED` and is printed with every
failure, so a failing cell is replayed with the same seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from osmo_core.service import Service

HERE = Path(__file__).resolve().parent
WORKFLOWS = sorted(p.stem for p in (HERE / "workflows").glob("*.yaml"))
SEED = int(os.environ.get("OSMO_FAULT_SEED", "1515"))
FULL = os.environ.get("OSMO_FAULT_FULL") == "1"
RUN_TIMEOUT = 45.0  # one workflow, fault and recovery included
GROUP_LEAD_FINISHED = "Lead task finished"  # why a group's other tasks were stopped (OSMO's)
TERMINAL_TASK = {"COMPLETED", "FAILED", "RESCHEDULED"}  # plus every FAILED_*

STEP = """\
umask 000  # the next attempt may run as another user (SSH hosts)
echo "$OSMO_RETRY_ID" >> {markers}/$1
echo $$ > {markers}/$1.pid
n=0
while [ ! -e {gates}/$1 ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done
"""


@dataclass(frozen=True)
class Moment:
    """When the fault lands: while the `target`-th task of the spec waits at its gate
    ("running"), or `delay` seconds after its gate opened ("ending")."""

    phase: str
    target: int
    delay: float

    def __str__(self) -> str:
        return f"{self.phase}:#{self.target}+{self.delay:.2f}s"


def pick_moment(seed: int, fault: str, workflow: str, phase: str) -> Moment:
    """A reproducible moment for one cell: the same seed gives the same moment."""
    rng = random.Random(f"{seed}/{fault}/{workflow}/{phase}")
    return Moment(phase, rng.randrange(100), round(rng.uniform(0.0, 0.3), 2))


def is_terminal(status: str) -> bool:
    return status in TERMINAL_TASK or status.startswith("FAILED_")


@dataclass
class Run:
    """One workflow under one fault: its folders, the engine driving it and what was seen."""

    tmp: Path  # markers/, gates/, step.sh; world-writable: SSH hosts' users write there
    data_dir: Path
    store_url: str
    workflow: str
    moment: Moment
    config: Callable[[], Any]  # the OsmoConfig of a (re)started control plane
    pool: str | None = None
    service: Service | None = None
    engine: subprocess.Popen[bytes] | None = None  # the control plane as `osmo workflow run`
    wf_id: str | None = None
    target: str = ""
    own_mounts: set[str] = field(default_factory=set)  # mounts the test holds on purpose
    output_roots: list[Path] = field(default_factory=list)  # agent roots: where tasks run

    @property
    def markers(self) -> Path:
        return self.tmp / "markers"

    @property
    def gates(self) -> Path:
        return self.tmp / "gates"

    @property
    def values(self) -> dict[str, str]:
        return {"step": str(self.tmp / "step.sh")}

    def prepare(self) -> None:
        for d in (self.tmp, self.markers, self.gates):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o777)
        (self.tmp / "step.sh").write_text(STEP.format(markers=self.markers, gates=self.gates))
        (self.tmp / "step.sh").chmod(0o755)
        self.output_roots.append(self.data_dir)

    @property
    def where(self) -> str:
        return (
            f"[OSMO_FAULT_SEED={SEED} workflow={self.workflow} moment={self.moment} "
            f"target={self.target or '?'} id={self.wf_id}]"
        )

    # --- the control plane ------------------------------------------------------------------

    async def start_service(self) -> Service:
        self.service = await Service(self.config()).start()
        return self.service

    async def stop_service(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    def start_engine_process(self) -> None:
        """The control plane as its own process (`osmo workflow run`), so it can be killed."""
        env = {**os.environ, "OSMO_HOME": str(self.data_dir), "XDG_CONFIG_HOME": str(self.tmp)}
        env.pop("OSMO_STORE_URL", None)
        self.engine = subprocess.Popen(
            [sys.executable, "-m", "osmo_core.cli", "workflow", "run"]
            + [str(HERE / "workflows" / f"{self.workflow}.yaml"), "--set"]
            + [f"{k}={v}" for k, v in self.values.items()],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / "engine.err", "ab"),  # noqa: SIM115
        )

    def kill_engine_process(self) -> None:
        if self.engine is not None:
            self.engine.send_signal(signal.SIGKILL)
            self.engine.wait(10)
            self.engine = None

    # --- what the driver sees ---------------------------------------------------------------

    def state(self) -> tuple[str | None, list[dict[str, Any]]]:
        """The workflow's status and its task attempts (spec order), from the running
        service, else read-only from the store of the engine process."""
        if self.service is not None and self.wf_id is not None:
            wf = self.service.get(self.wf_id)
            return wf["status"], wf["tasks"]
        db = self.data_dir / "osmo.db"
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                c.row_factory = sqlite3.Row
                wf = c.execute("select id, status from workflows").fetchone()
                if wf is None:
                    return None, []
                self.wf_id = wf["id"]
                rows = c.execute(
                    "select name, retry_id, status, hold from tasks order by retry_id"
                ).fetchall()
                return wf["status"], [dict(r) for r in rows]
        except sqlite3.OperationalError:  # not created yet: the engine is starting
            return None, []

    def task_pid(self, name: str) -> int:
        return int((self.markers / f"{name}.pid").read_text())


class Fault:
    """One thing that breaks. `inject` breaks it at the moment; `recover` puts it back after
    `hold` seconds (a restart, a remount); the workflow must then end as `expect` says.
    `reruns`: whether the policy reruns attempts hit by it (False: every task runs once)."""

    name = ""
    needs = "local"  # which fixture world it runs in: local, ssh
    hold = 0.0
    expect = "COMPLETED"
    reruns = True
    in_process = True  # False: the control plane runs as `osmo workflow run`, to be killed

    async def setup(self, run: Run) -> None:
        """Before the workflow starts (e.g. mount the data folder)."""

    async def inject(self, run: Run) -> None:
        raise NotImplementedError

    async def recover(self, run: Run) -> None:
        """Undo the fault."""

    async def teardown(self, run: Run) -> None:
        """After the checks: undo what setup made."""

    async def leftovers(self, run: Run) -> list[str]:
        """What of the run's attempts its world still holds besides local processes (pods)."""
        return []

    def evidence(self) -> list[str]:
        """What a failed cell's message adds to find the cause: logs its world keeps (pods')."""
        return []


async def drive(run: Run, fault: Fault, open_gate: Callable[[str], Awaitable[None]]) -> str:
    """Open gates until the workflow ends, injecting `fault` once at the run's moment; the
    workflow's final status."""
    injected = False
    deadline = time.monotonic() + RUN_TIMEOUT
    names: list[str] = []
    while time.monotonic() < deadline:
        status, tasks = run.state()
        if run.service is not None and status is not None and _wf_terminal(status):
            seen = [(t["name"], t["retry_id"], t["status"], t.get("message")) for t in tasks]
            assert injected, f"the workflow ended ({status}) before the fault: {seen}"
            return status
        for t in tasks:
            if t["name"] not in names:
                names.append(t["name"])
        if names and not run.target:
            run.target = sorted(names)[run.moment.target % len(names)]
        running = [t for t in tasks if t["status"] == "RUNNING"]
        if run.service is None and not injected and _waits_for_user(run, running):
            # only a control plane can mark it done: the fault lands now, not at the target
            injected, run.target = True, f"{run.target} (forced: held)"
            await fault.inject(run)
            await fault.recover(run)
        for t in running:
            gate = run.gates / t["name"]
            if not (run.markers / f"{t['name']}.pid").exists():
                continue  # its command has not reached its gate yet
            if not injected and t["name"] == run.target and not gate.exists():
                injected = True
                if run.moment.phase == "ending":
                    await open_gate(t["name"])
                    await asyncio.sleep(run.moment.delay)
                else:
                    await asyncio.sleep(run.moment.delay)
                await fault.inject(run)
                if fault.hold:
                    await open_gate(t["name"])  # the task ends while things are broken
                    await asyncio.sleep(fault.hold)
                await fault.recover(run)
                break
            if injected or t["name"] != run.target:
                await open_gate(t["name"])
        await asyncio.sleep(0.05)
    status, tasks = run.state()
    seen = [(t["name"], t["retry_id"], t["status"], t.get("message")) for t in tasks]
    raise AssertionError(f"the workflow did not end within {RUN_TIMEOUT:.0f} s: {status} {seen}")


def _waits_for_user(run: Run, running: list[dict[str, Any]]) -> bool:
    """An interactive task has passed its gate: it waits for a `done` only a service gives."""
    return any(t["hold"] == "interactive" and (run.gates / t["name"]).exists() for t in running)


def _wf_terminal(status: str) -> bool:
    return status in {"COMPLETED", "FAILED"} or status.startswith("FAILED_")


def gate_opener(run: Run) -> Callable[[str], Awaitable[None]]:
    """Open a task's gate; an interactive task's user marks it done once it waits."""

    async def open_gate(name: str) -> None:
        (run.gates / name).touch()
        if run.service is None or run.wf_id is None:
            return
        with contextlib.suppress(Exception):  # not waiting (yet): asked again next round
            t = run.service.task(run.wf_id, name)
            if t["waiting_for_user"]:
                await run.service.done(run.wf_id, name)

    return open_gate


# --- the checks -----------------------------------------------------------------------------


def task_processes(root: Path) -> list[psutil.Process]:
    """Task processes of attempts under `root` still alive (zombies count as gone)."""
    found = []
    for p in psutil.process_iter(["environ", "status"]):
        env = p.info["environ"] or {}
        if str(root) in env.get("OSMO_OUTPUT", "") and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def agent_processes(root: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        alive = p.info["status"] != psutil.STATUS_ZOMBIE
        if alive and "osmo_core.agent" in cmd and str(root) in " ".join(cmd):
            found.append(p)
    return found


def mounts_under(path: Path) -> set[str]:
    with open("/proc/mounts") as f:
        points = {line.split()[1].replace("\\040", " ") for line in f}
    return {m for m in points if m == str(path) or m.startswith(f"{path}/")}


def listening_ports(procs: list[psutil.Process]) -> list[tuple[int, int]]:
    """(pid, port) of every TCP socket in LISTEN held by `procs`."""
    found = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            found += [
                (p.pid, c.laddr.port) for c in p.net_connections("inet") if c.status == "LISTEN"
            ]
    return found


async def settled(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """The last value of `check()` once it is falsy, or when `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while (got := check()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return got


async def check_invariants(run: Run, fault: Fault, status: str) -> None:
    """Everything that must hold once the workflow has ended."""
    assert run.service is not None and run.wf_id is not None
    wf = run.service.get(run.wf_id)
    attempts: dict[str, list[dict[str, Any]]] = {}
    for t in wf["tasks"]:
        attempts.setdefault(t["name"], []).append(t)
    summary = {
        n: [(a["retry_id"], a["status"], (a["message"] or "")[:80]) for a in ts]
        for n, ts in attempts.items()
    }

    # 1. it ends as the policy promises, and no attempt is left unfinished
    assert status == fault.expect, f"workflow {status}, expected {fault.expect}: {summary}"
    stuck = [(n, a["retry_id"], a["status"]) for n, ts in attempts.items() for a in ts]
    stuck = [s for s in stuck if not is_terminal(s[2])]
    assert not stuck, f"attempts not ended: {stuck}"

    # 2. no attempt ran twice; without reruns every task ran exactly once
    for name, ts in attempts.items():
        marker = run.markers / name
        ran = marker.read_text().split() if marker.exists() else []
        assert len(ran) == len(set(ran)), f"{name}: an attempt ran twice: {ran}"
        assert {int(r) for r in ran} <= {a["retry_id"] for a in ts}, f"{name}: {ran} {summary}"
        if not fault.reruns:
            assert ran == ["0"], f"{name} ran {ran}, expected once: {summary}"

    # 3. no completed output lost; every task completed once, but a group's other tasks,
    # which end (COMPLETED, with no output of their own) when its lead has finished
    for name, ts in attempts.items():
        if ts[-1]["message"] == GROUP_LEAD_FINISHED:
            continue
        done = [a for a in ts if a["status"] == "COMPLETED"]
        assert len(done) == 1, f"{name}: {len(done)} completed attempts: {summary}"
        rel = f"{run.wf_id}/{name}/{done[0]['retry_id']}/output/x"
        found = [p for r in run.output_roots for p in r.glob(f"**/{rel}")]
        assert found, f"{name}: the completed output {rel} is missing"
        assert found[0].read_text().strip() == name, f"{name}: output {found[0]} is wrong"

    # 4. no task process, no port of one, no mount left behind
    left = await settled(lambda: [p for r in run.output_roots for p in task_processes(r)])
    assert not left, f"task processes left: {[p.info for p in left]}"
    for _ in range(50):  # a pod goes once its deletion is seen: bounded, 5 s
        if not (kept := await fault.leftovers(run)):
            break
        await asyncio.sleep(0.1)
    assert not kept, f"left behind: {kept}"
    ports = listening_ports([p for r in run.output_roots for p in agent_processes(r)])
    assert not ports, f"ports left listening: {ports}"
    extra = mounts_under(run.tmp) - run.own_mounts
    extra |= mounts_under(run.data_dir) - run.own_mounts
    assert not extra, f"mounts left behind: {extra}"

    # 5. free capacity back to the total
    def busy() -> list[dict[str, Any]]:
        assert run.service is not None
        return [
            r
            for r in run.service.resources()
            if r["free_cpu"] != r["cpu"]
            or r["free_memory"] != r["memory"]
            or r["free_gpus"] != r["gpus"]
        ]

    held = await settled(busy, timeout=5)
    assert not held, f"capacity not freed: {held}"


# --- the matrix -----------------------------------------------------------------------------

MATRIX: list[tuple[str, str, str, str, str]] = []  # fault, workflow, moment, target, outcome


def write_matrix(path: Path) -> str:
    lines = [
        f"# Fault matrix (OSMO_FAULT_SEED={SEED}{', full' if FULL else ''})",
        "",
        "| fault | workflow | moment | target | outcome |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {' | '.join(row)} |" for row in MATRIX]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
