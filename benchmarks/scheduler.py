"""Scheduler benchmark: one scheduling pass over a big fleet and a long queue (issue 17).

    python benchmarks/scheduler.py          # 1,000 machines x 8 GPUs, 100 users, 100,000 tasks
    python benchmarks/scheduler.py --quick  # the growth tables only, smaller

The real Scheduler and WaitQueue (what the engine runs each round), no engine and no store: a
pool `gpu` (quota 6,000 of 8,000 GPUs, DRF fair share between 100 users) and a pool `batch`
sharing the same machines (no quota). Tasks ask 1, 2, 4 or 8 GPUs (8 CPUs and 32 GiB per GPU);
priorities 10% HIGH, 60% NORMAL, 30% LOW. The fleet is filled by the first passes; then:

- steady state: 10 (then 100) random running tasks end, one pass places what fits and says
  why the rest wait (reported: median, p99, worst of 50 passes). Target < 50 ms.
- burst: 10,000 submissions at once, then one pass. Target < 500 ms.
- reasons: after that pass, the reasons of the units it did not reach, a slice per engine
  round as engine/placement.py hands them out (`WaitQueue.unreached`): the slowest slice (what
  a round adds) and all of them.
- memory: the process's peak RSS. Target < 500 MB.
- growth: the steady-state pass with the queue at 10k..300k tasks (1,000 machines), and with
  250..4,000 machines (100k queued). Linear or flatter is the target, never quadratic.
"""

from __future__ import annotations

import random
import resource
import statistics
import sys
import time

from osmo_core.config import PRIORITIES, load_config
from osmo_core.engine.placement import REASON_SLICE
from osmo_core.engine.waitqueue import WaitQueue
from osmo_core.scheduler import Alloc, Scheduler
from osmo_core.spec.models import Resource
from osmo_core.wire import Node

GI = 2**30
SHAPES = {g: Resource(cpu=8 * g, memory=32 * g * GI, gpu=g) for g in (1, 2, 4, 8)}
PRIORITY_MIX = [PRIORITIES["HIGH"]] * 1 + [PRIORITIES["NORMAL"]] * 6 + [PRIORITIES["LOW"]] * 3
SIZE_MIX = [1] * 5 + [2] * 3 + [4] * 1 + [8] * 1


class Bench:
    def __init__(self, machines: int, users: int = 100, seed: int = 1):
        self.rng = random.Random(seed)
        pools = {
            "gpu": {
                "quota": {"gpu": machines * 6},
                "fair_share": "drf",
                "limits": {"*": {"max_gpus": machines * 2}},
            },
            "batch": {},
        }
        config = load_config(backends={"local": {"kind": "local"}}, pools=pools, default_pool="gpu")
        self.scheduler = Scheduler(config.pool_configs())
        self.scheduler.set_nodes(
            "local",
            [
                Node(f"m{i}", cpu=128, memory=1024 * GI, gpus=list(range(8)))
                for i in range(machines)
            ],
        )
        self.shape: dict[int, Resource] = {}
        self.queue: WaitQueue[int] = WaitQueue(self.scheduler, self.shape.__getitem__)
        self.running: dict[int, Alloc] = {}
        self.users = [f"user{u}" for u in range(users)]
        self.next_id = 0

    def submit(self, n: int) -> None:
        for _ in range(n):
            t = self.next_id
            self.next_id += 1
            self.shape[t] = SHAPES[self.rng.choice(SIZE_MIX)]
            pool = "batch" if self.rng.random() < 0.1 else "gpu"
            user = self.rng.choice(self.users)
            self.queue.add([t], pool, self.rng.choice(PRIORITY_MIX), user, f"wf{t // 100}")

    def one_pass(self) -> float:
        self.queue.dirty = True
        t0 = time.perf_counter()
        placed, _ = self.queue.schedule()
        took = time.perf_counter() - t0
        for items, allocs in placed:
            for t, a in zip(items, allocs, strict=True):
                self.running[t] = a
        return took

    def fill(self) -> float:
        """Passes until nothing more starts; the slowest one."""
        worst, before = 0.0, -1
        while len(self.running) != before:
            before = len(self.running)
            worst = max(worst, self.one_pass())
        return worst

    def churn(self, ends: int) -> float:
        """`ends` running tasks end, then one pass."""
        for t in self.rng.sample(sorted(self.running), min(ends, len(self.running))):
            self.scheduler.release(self.running.pop(t))
            del self.shape[t]
        return self.one_pass()


def reasons(b: Bench) -> tuple[float, float, int]:
    """The reasons of the units the last pass did not reach, REASON_SLICE at a time: the
    slowest slice, all slices, and how many units."""
    worst = total = 0.0
    n = 0
    while b.queue.sweeping:
        t0 = time.perf_counter()
        units = b.queue.unreached(REASON_SLICE)
        for unit in units:
            b.queue.reason_of_unit(unit)
        took = time.perf_counter() - t0
        worst, total, n = max(worst, took), total + took, n + len(units)
    return worst, total, n


def steady(b: Bench, passes: int = 50, ends: int = 100) -> list[float]:
    return sorted(b.churn(ends) for _ in range(passes))


def ms(x: float) -> str:
    return f"{x * 1000:7.1f} ms"


def main(quick: bool) -> None:
    if not quick:
        t0 = time.perf_counter()
        b = Bench(1000)
        b.submit(100_000)
        fill = b.fill()
        print(f"setup: 1,000 machines, 100,000 queued, filled in {time.perf_counter() - t0:.1f} s")
        print(f"  slowest pass while filling {len(b.running)} tasks onto the fleet: {ms(fill)}")
        for ends in (10, 100):
            times = steady(b, ends=ends)
            median, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
            print(
                f"steady state ({ends} ends, then a pass; 50 passes): median {ms(median)}, "
                f"p99 {ms(p99)}, worst {ms(times[-1])}  (target < 50 ms)"
            )
        b.submit(10_000)
        print(f"burst of 10,000 submissions, then one pass: {ms(b.churn(100))}  (target < 500 ms)")
        print(f"queue after: {len(b.queue)} waiting, {len(b.running)} running")
        worst, total, n = reasons(b)
        print(
            f"reasons of the {n:,} units that pass did not reach, {REASON_SLICE} per round: "
            f"slowest slice {ms(worst)}, all {ms(total)}"
        )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS: {rss:.0f} MB  (target < 500 MB)")
    scale = 10 if quick else 1
    print("\ngrowth with queue length (1,000 machines; pass after 100 ends, median of 20):")
    for n in (10_000, 30_000, 100_000, 300_000):
        b = Bench(1000 // scale)
        b.submit(n // scale)
        b.fill()
        print(f"  {n // scale:>8,} queued: {ms(statistics.median(steady(b, 20)))}")
    print("growth with machine count (100,000 queued; pass after 100 ends, median of 20):")
    for m in (250, 500, 1000, 2000, 4000):
        b = Bench(m // scale)
        b.submit(100_000 // scale)
        b.fill()
        print(f"  {m // scale:>8,} machines: {ms(statistics.median(steady(b, 20)))}")


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
