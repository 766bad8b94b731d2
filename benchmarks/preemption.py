"""Preemption benchmark: choosing the victims for one waiting unit must not stall the engine.

    python benchmarks/preemption.py               # 100, 300 and 1,000 machines
    python benchmarks/preemption.py 2000          # these machine counts instead

The real Scheduler and `preemption.choose_victims`, on machines of 8 GPUs each, every GPU held
by a one-GPU LOW task (the candidates). Two waiting units: one that needs one GPU (the first
candidate tried frees enough: the best case) and one that needs a whole machine (no single
candidate does, so every one is simulated alone before the youngest are added: the worst
case for one-GPU candidates). Reports the choice's time and how many simulations it ran, best
of 3. Target: under 50 ms for 1,000 machines in the best case; the worst case grows linearly
with the candidates (each simulation copies only the machines it touches).
"""

from __future__ import annotations

import sys
import time

from osmo_core.config import PlatformConfig, PoolConfig
from osmo_core.preemption import Candidate, choose_victims
from osmo_core.scheduler import Alloc, Scheduler
from osmo_core.spec.models import Resource
from osmo_core.wire import Node

GPUS = 8


def cluster(machines: int) -> tuple[Scheduler, list[Candidate[int]]]:
    s = Scheduler({"p": PoolConfig("p", "b", "any", {"any": PlatformConfig("any")})})
    s.set_nodes(
        "b",
        [Node(f"m{i}", cpu=64, memory=2**40, gpus=list(range(GPUS))) for i in range(machines)],
    )
    candidates = []
    for i in range(machines * GPUS):
        alloc = s.place("p", Resource(cpu=1, gpu=1))
        assert alloc is not None
        candidates.append(Candidate(i, float(i), (alloc,)))
    return s, candidates


def choose(s: Scheduler, candidates: list[Candidate[int]], gpus: int) -> tuple[float, int, int]:
    """Seconds, simulations and victims of one choice for a unit of `gpus` GPUs."""
    runs = 0
    start = time.perf_counter()
    sim = s.simulation("p", [Resource(cpu=1, gpu=gpus)])

    def fits(freed: list[Alloc]) -> bool:
        nonlocal runs
        runs += 1
        return sim.fits(freed)

    chosen = choose_victims(candidates, fits)
    assert chosen is not None
    return time.perf_counter() - start, runs, len(chosen)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 300, 1000]
    print("| machines | candidates | unit | choice (best of 3) | simulations | victims |")
    print("| --- | --- | --- | --- | --- | --- |")
    for machines in sizes:
        s, candidates = cluster(machines)
        for gpus in (1, GPUS):
            best = min(choose(s, candidates, gpus) for _ in range(3))
            secs, runs, victims = best
            print(
                f"| {machines:,} | {len(candidates):,} | {gpus} GPU | {secs * 1000:.1f} ms "
                f"| {runs:,} | {victims} |"
            )


if __name__ == "__main__":
    main()
