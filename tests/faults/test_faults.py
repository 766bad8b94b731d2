"""Fault injection on the embedded default: the control plane, the agent, a task's process
group and the data folder's storage each break at a seeded moment while a small workflow runs;
afterwards every invariant of `harness.check_invariants` must hold.

The default run takes one workflow and one phase per fault (chosen by `OSMO_FAULT_SEED`);
`OSMO_FAULT_FULL=1` runs every workflow in both phases.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import subprocess

import pytest

from tests.faults.conftest import RunFactory
from tests.faults.harness import (
    FULL,
    HERE,
    MATRIX,
    SEED,
    WORKFLOWS,
    Fault,
    Run,
    check_invariants,
    drive,
    gate_opener,
    pick_moment,
)


def _mount(*argv: str) -> None:
    subprocess.run(["mount", *argv], check=True, capture_output=True, timeout=10)


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts)")


class ControlPlane(Fault):
    """SIGKILL of `osmo workflow run`; a new control plane on the same folder takes over."""

    name = "control-plane"
    in_process = False
    reruns = False  # the agent outlives the engine: nothing runs again

    async def inject(self, run: Run) -> None:
        run.kill_engine_process()

    async def recover(self, run: Run) -> None:
        await run.start_service()


class Agent(Fault):
    """SIGKILL of the host agent: its attempts are lost and rescheduled on a new agent."""

    name = "agent"

    async def inject(self, run: Run) -> None:
        os.kill(int((run.data_dir / "agent.pid").read_text()), signal.SIGKILL)


class TaskGroup(Fault):
    """SIGKILL of the target task's whole process group (exit 137: RESCHEDULE in the specs)."""

    name = "task-group"

    async def inject(self, run: Run) -> None:
        with contextlib.suppress(ProcessLookupError):  # "ending": it may have ended first
            os.killpg(os.getpgid(run.task_pid(run.target)), signal.SIGKILL)


class DiskFull(Fault):
    """The data folder is a small tmpfs; it fills up while the target ends, then frees."""

    name = "disk-full"
    hold = 1.5

    async def setup(self, run: Run) -> None:
        _needs_root()
        run.data_dir.mkdir(parents=True)
        _mount("-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs", str(run.data_dir))
        run.own_mounts.add(str(run.data_dir))

    async def inject(self, run: Run) -> None:
        chunk = b"\0" * (1 << 20)
        with open(run.data_dir / "filler", "wb") as f:
            for _ in range(64):  # 32 MiB fill it; bounded all the same
                try:
                    f.write(chunk)
                    f.flush()
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    return
        raise AssertionError("the tmpfs did not fill up")

    async def recover(self, run: Run) -> None:
        (run.data_dir / "filler").unlink()

    async def teardown(self, run: Run) -> None:
        _mount("--make-private", str(run.data_dir))
        subprocess.run(["umount", str(run.data_dir)], check=True, timeout=10)


class ReadOnly(Fault):
    """The data folder turns read-only while the target ends (a read-only bind mounted over
    it: open files keep working, every new write gets EROFS), then writable again."""

    name = "read-only"
    hold = 1.5

    async def setup(self, run: Run) -> None:
        _needs_root()

    async def inject(self, run: Run) -> None:
        _mount("--bind", str(run.data_dir), str(run.data_dir))
        run.own_mounts.add(str(run.data_dir))
        _mount("-o", "remount,bind,ro", str(run.data_dir))

    async def recover(self, run: Run) -> None:
        subprocess.run(["umount", str(run.data_dir)], check=True, timeout=10)
        run.own_mounts.discard(str(run.data_dir))


LOCAL_FAULTS: list[Fault] = [ControlPlane(), Agent(), TaskGroup(), DiskFull(), ReadOnly()]
PHASES = ("running", "ending")


def cells(faults: list[Fault]) -> list[object]:
    """The matrix to run: all of it with OSMO_FAULT_FULL=1, else one seeded cell per fault."""
    if FULL:
        picked = [(f, w, p) for f in faults for w in WORKFLOWS for p in PHASES]
    else:
        rng = random.Random(SEED)  # every workflow and phase comes up, in a seeded order
        start = rng.randrange(len(WORKFLOWS))
        picked = [
            (f, WORKFLOWS[(start + i) % len(WORKFLOWS)], rng.choice(PHASES))
            for i, f in enumerate(faults)
        ]
    return [pytest.param(f, w, p, id=f"{f.name}-{w}-{p}") for f, w, p in picked]


async def run_cell(run: Run, fault: Fault, pool: str | None = None) -> None:
    """Run the cell's workflow under its fault, check the invariants, record the outcome."""
    outcome = "ok"
    try:
        await fault.setup(run)
        if fault.in_process:
            svc = await run.start_service()
            spec = HERE / "workflows" / f"{run.workflow}.yaml"
            run.wf_id = await svc.submit(
                spec.read_text(), file=str(spec), set_values=run.values, pool=pool
            )
        else:
            run.start_engine_process()
        status = await drive(run, fault, gate_opener(run))
        await check_invariants(run, fault, status)
    except AssertionError as e:
        outcome = "FAIL: " + str(e).splitlines()[0][:160]
        raise AssertionError("\n".join([str(e), run.where, *fault.evidence()])) from None
    except pytest.skip.Exception:
        outcome = "skipped"
        raise
    except Exception as e:
        outcome = f"ERROR: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
        raise
    finally:
        MATRIX.append((fault.name, run.workflow, str(run.moment), run.target, outcome))


@pytest.mark.parametrize(("fault", "workflow", "phase"), cells(LOCAL_FAULTS))
async def test_local_fault(fault: Fault, workflow: str, phase: str, fault_run: RunFactory) -> None:
    run = fault_run(workflow, pick_moment(SEED, fault.name, workflow, phase), fault)
    await run_cell(run, fault)
