"""Engine benchmark: the real engine + store + local backend against a bare-process floor.

    python benchmarks/engine.py            # all workloads, each in a fresh process
    python benchmarks/engine.py W3         # one workload

W1  200-task chain                      (each task `true`)
W2  1 -> 500 -> 1 fan-out / fan-in
W3  2,000 independent tasks, parallelism 2
W4  planning (parse + validate + DAG + placement check) of a 10,000-task random DAG, no run

The floor is measured in the same process, interleaved with the engine runs: an asyncio loop
that starts the same processes with the same parallelism and nothing else; so is the peer,
Dask's threaded scheduler on the same graph (when dask is installed). Each is run
OSMO_BENCH_REPEAT times (default 3) and the best of each is compared, since this is a shared VM.
Task folders and the SQLite file go to $TMPDIR (set TMPDIR=/dev/shm to take the disk out).
Targets (issue 21, 2-core machine): W1-W3 within 1.5x the floor, W4 under 1 s here (0.5 s for
the whole process), engine peak RSS under 200 MB for W3. `gc_s`: the best run's time in
Python's cyclic garbage collector. `*_cpu_per_task_ms`: CPU (user + system) per task of the
floor's loop, the engine's process and the agent, each the least of the runs. CPU is steadier
than wall time on a shared VM, and the issue's steady-state target is stated in it (~0.35 ms of
control-plane CPU per independent task). `per_task`: what the best run did per task, counted
(steady where time is not): messages the engine sent the agent and read from it, store commits,
rows and events written, placement tries, events handed to in-process followers.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

PARALLELISM = 2
REPEAT = int(os.environ.get("OSMO_BENCH_REPEAT", "3"))


def chain(n: int) -> dict:
    tasks = [{"name": "t0", "command": ["true"]}]
    tasks += [
        {"name": f"t{i}", "command": ["true"], "inputs": [{"task": f"t{i - 1}"}]}
        for i in range(1, n)
    ]
    return {"workflow": {"name": "w1", "tasks": tasks}}


def fan(width: int) -> dict:
    tasks = [{"name": "src", "command": ["true"]}]
    tasks += [
        {"name": f"m{i}", "command": ["true"], "inputs": [{"task": "src"}]} for i in range(width)
    ]
    tasks.append(
        {"name": "sink", "command": ["true"], "inputs": [{"task": f"m{i}"} for i in range(width)]}
    )
    return {"workflow": {"name": "w2", "tasks": tasks}}


def independent(n: int) -> dict:
    return {
        "workflow": {
            "name": "w3",
            "tasks": [{"name": f"t{i}", "command": ["true"]} for i in range(n)],
        }
    }


def random_dag_yaml(n: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    lines = [
        "workflow:",
        "  name: w4",
        "  resources:",
        "    default:",
        "      cpu: 500m",
        "      memory: 64Mi",
        "  tasks:",
    ]
    for i in range(n):
        lines += [
            f"  - name: t{i}",
            "    command: [sh, -c]",
            '    args: ["echo {{input:0}} > {{output}}/x"]' if i else "    args: [true]",
        ]
        if i:
            ups = sorted({rng.randrange(max(0, i - 50), i) for _ in range(rng.randint(1, 3))})
            lines.append("    inputs:")
            lines += [f"    - task: t{u}" for u in ups]
    return "\n".join(lines) + "\n"


# --- floor: the same processes, same parallelism, nothing else -------------------------------


async def _spawn(sem: asyncio.Semaphore) -> None:
    async with sem:
        proc = await asyncio.create_subprocess_exec(
            "true", stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        await proc.communicate()


async def floor(stages: list[int]) -> float:
    sem = asyncio.Semaphore(PARALLELISM)
    t0 = time.perf_counter()
    for width in stages:
        await asyncio.gather(*(_spawn(sem) for _ in range(width)))
    return time.perf_counter() - t0


def dask_threads(stages: list[int]) -> float | None:
    """The peer issue 21 names: Dask's threaded scheduler (the same parallelism) running the
    same processes, each stage after the one before; graph building included. None without
    dask (`pip install dask`). It persists nothing and does not survive a crash."""
    try:
        import dask
    except ImportError:
        return None

    def run(*_upstream: object) -> int:
        subprocess.run(["true"], capture_output=True, start_new_session=True, check=True)
        return 0

    t0 = time.perf_counter()
    last: list[object] = []
    for width in stages:
        last = [dask.delayed(run)(*last) for _ in range(width)]
    dask.compute(*last, scheduler="threads", num_workers=PARALLELISM)
    return time.perf_counter() - t0


# --- engine runs -----------------------------------------------------------------------------


class GcClock:
    """Seconds this process spent in the cyclic garbage collector (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def _tick(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._tick)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._tick)


class Counts:
    """Counts, while in use, the engine's messages to and from the agent (lines encoded and
    decoded by its link), what its store commits (rows: inserts, updates and events), its
    scheduling passes' placement tries (a unit placed or found not to fit), and the events
    handed to in-process subscribers (`delivered`: each wakes a follower)."""

    def __init__(self) -> None:
        names = ("to_agent", "from_agent", "commits", "rows", "events", "tries", "delivered")
        self.n = dict.fromkeys(names, 0)

    def __enter__(self) -> Counts:
        from osmo_core import store
        from osmo_core.backends import agentlink
        from osmo_core.engine.waitqueue import WaitQueue
        from osmo_core.events import Subscription

        encode, decode = agentlink.encode, agentlink.decode
        commit, try_, offer = store.Store.commit, WaitQueue._try, Subscription.offer
        n = self.n

        def counted_encode(msg: Any) -> bytes:
            n["to_agent"] += 1
            return encode(msg)

        def counted_decode(line: bytes) -> Any:
            n["from_agent"] += 1
            return decode(line)

        def counted_commit(self_: store.Store, batch: store.Batch) -> None:
            n["commits"] += 1
            n["events"] += len(batch.events)
            n["rows"] += len(batch.events) + sum(map(len, batch.inserts.values()))
            n["rows"] += sum(map(len, batch.updates.values()))
            commit(self_, batch)

        def counted_try(self_: WaitQueue[Any], *args: Any) -> Any:
            n["tries"] += 1
            return try_(self_, *args)

        def counted_offer(self_: Subscription, ev: Any) -> None:
            n["delivered"] += 1
            offer(self_, ev)

        counted = [
            (agentlink, "encode", counted_encode),
            (agentlink, "decode", counted_decode),
            (store.Store, "commit", counted_commit),
            (WaitQueue, "_try", counted_try),
            (Subscription, "offer", counted_offer),
        ]
        self._saved = [(owner, name, getattr(owner, name)) for owner, name, _ in counted]
        for owner, name, fn in counted:
            setattr(owner, name, fn)
        return self

    def __exit__(self, *_exc: object) -> None:
        for owner, name, fn in self._saved:
            setattr(owner, name, fn)

    def per_task(self, n: int) -> dict[str, float]:
        return {k: round(v / n, 2) for k, v in self.n.items()}


def _cpu_of(pid: int | None) -> float | None:
    """User + system seconds of process `pid` so far (None: not known, or gone)."""
    if pid is None:
        return None
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system


async def engine_run(spec: dict, data: Path) -> tuple[float, str, float, float | None]:
    """Wall seconds from submit to the end, the workflow's status, and the CPU seconds the
    engine's process and the agent spent meanwhile (the agent's None if it was not up at
    the submit: its start would be in it)."""
    from osmo_core.config import OsmoConfig
    from osmo_core.service import Service

    config = OsmoConfig(
        data_dir=str(data),
        backends={"local": {"kind": "local", "cpus": PARALLELISM, "idle_timeout": 30}},
    )
    spec["workflow"]["resources"] = {"default": {"cpu": 1}}
    async with Service(config) as svc:
        local = svc.backends["local"]
        try:
            pid = local.agent.get("pid")  # type: ignore[attr-defined]
            agent0, cpu0, t0 = _cpu_of(pid), time.process_time(), time.perf_counter()
            wf_id = await svc.submit(spec)
            status = await svc.wait(wf_id)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            agent1 = _cpu_of(pid)
        finally:
            await local.shutdown_agent(force=True)  # type: ignore[attr-defined]
    agent = agent1 - agent0 if agent0 is not None and agent1 is not None else None
    return wall, status.value, cpu, agent


def run_workload(name: str) -> dict:
    if name == "W4":
        from osmo_core.config import OsmoConfig
        from osmo_core.dag import WorkflowDAG
        from osmo_core.scheduler import Scheduler
        from osmo_core.spec import load_spec
        from osmo_core.wire import Node

        text = random_dag_yaml(10_000)
        scheduler = Scheduler(OsmoConfig().pool_configs())
        scheduler.set_nodes("local", [Node("here", cpu=2, memory=8 * 2**30)])
        t0 = time.perf_counter()
        loaded = load_spec(text, file="w4.yaml")
        dag = WorkflowDAG.build(loaded.workflow)
        order = dag.topo_order()
        problems = scheduler.check(loaded.workflow, "local")
        wall = time.perf_counter() - t0
        assert len(order) == 10_000 and not problems
        return {
            "workload": name,
            "tasks": 10_000,
            "wall_s": round(wall, 3),
            "target": "< 1 s",
            "ok": wall < 1.0,
        }

    spec, stages = {
        "W1": (chain(200), [1] * 200),
        "W2": (fan(500), [1, 500, 1]),
        "W3": (independent(2000), [2000]),
    }[name]
    n = sum(stages)
    import osmo_core.service  # noqa: F401  (imported before the runs: start-up is not in them)

    # This machine is a shared VM: interleave floor and engine runs and keep each one's best.
    floors, walls, peers, gcs, cpus, agent_cpus, floor_cpus = [], [], [], [], [], [], []
    counts: list[Counts] = []
    for _ in range(REPEAT):
        cpu0 = time.process_time()
        floors.append(asyncio.run(floor(stages)))
        floor_cpus.append(time.process_time() - cpu0)
        peers.append(dask_threads(stages))
        with (
            tempfile.TemporaryDirectory(prefix="osmo-bench-") as tmp,
            GcClock() as clock,
            Counts() as count,
        ):
            wall, status, cpu, agent_cpu = asyncio.run(engine_run(copy.deepcopy(spec), Path(tmp)))
        walls.append(wall)
        counts.append(count)
        gcs.append(clock.seconds)
        cpus.append(cpu)
        if agent_cpu is not None:
            agent_cpus.append(agent_cpu)
    floor_s, wall = min(floors), min(walls)
    best = walls.index(wall)
    dask_s = [p for p in peers if p is not None]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = wall / floor_s
    return {
        "workload": name,
        "tasks": n,
        "status": status,
        "floor_s": round(floor_s, 3),
        "engine_s": round(wall, 3),
        "ratio": round(ratio, 2),
        "floor_per_task_ms": round(floor_s / n * 1000, 2),
        "overhead_per_task_ms": round((wall - floor_s) / n * 1000, 2),
        # CPU is steadier than wall time on a shared VM: the least of the runs, per task. The
        # floor's is its loop's, spawning the processes: what the agent does at the least.
        "floor_cpu_per_task_ms": round(min(floor_cpus) / n * 1000, 3),
        "engine_cpu_per_task_ms": round(min(cpus) / n * 1000, 3),
        "agent_cpu_per_task_ms": round(min(agent_cpus) / n * 1000, 3) if agent_cpus else None,
        "per_task": counts[best].per_task(n),
        "peak_rss_mb": round(rss_mb, 1),
        "gc_s": round(gcs[best], 3),  # of the best run: set up, run, shut down
        "dask_threads_s": round(min(dask_s), 3) if dask_s else None,
        "target": "ratio <= 1.5",
        "ok": status == "COMPLETED" and ratio <= 1.5 and (name != "W3" or rss_mb < 200),
    }


def main() -> int:
    names = sys.argv[1:] or ["W1", "W2", "W3", "W4"]
    if len(names) == 1:
        print(json.dumps(run_workload(names[0])))
        return 0
    results = []
    for name in names:  # a fresh process each, so peak RSS is the workload's own
        out = subprocess.run(
            [sys.executable, __file__, name], capture_output=True, text=True, timeout=900
        )
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr}", file=sys.stderr)
            return 1
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in results:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
