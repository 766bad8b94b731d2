"""What a running attempt uses: CPU, resident memory and processes of its command's process
tree, sampled every `OSMO_METRICS_INTERVAL` seconds (10 by default; 0 turns sampling off).

A command starts in its own session, so its tree is its leader and the leader's descendants;
CPU time of children that already ended and were waited for counts through the leader's
`children_*` times. GPU use is not sampled (no GPU on the machines this was built on).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

INTERVAL = float(os.environ.get("OSMO_METRICS_INTERVAL", "10"))


@dataclass
class Sampler:
    """One attempt's samples; `sample()` is blocking (psutil reads /proc): run it off-loop."""

    pid: int
    cpu_seconds: float = 0.0
    memory_peak: int = 0
    _last: tuple[float, float] | None = None  # (monotonic time, CPU seconds) of the last sample

    def sample(self) -> dict[str, float | int] | None:
        """{cpu, cpu_seconds, memory, memory_peak, procs}; None once the leader is gone."""
        try:
            leader = psutil.Process(self.pid)
            procs = [leader, *leader.children(recursive=True)]
            t = leader.cpu_times()
            cpu = t.children_user + t.children_system
        except psutil.Error:
            return None
        memory = 0
        for p in procs:
            try:
                pt = p.cpu_times()
                cpu += pt.user + pt.system
                memory += p.memory_info().rss
            except psutil.Error:  # ended between the listing and now
                continue
        now = time.monotonic()
        # Never backwards: a child that ended un-waited takes its CPU time along with it.
        self.cpu_seconds = max(self.cpu_seconds, cpu)
        cores = 0.0
        if self._last is not None and now > self._last[0]:
            cores = max(0.0, (self.cpu_seconds - self._last[1]) / (now - self._last[0]))
        self._last = (now, self.cpu_seconds)
        self.memory_peak = max(self.memory_peak, memory)
        return {
            "cpu": round(cores, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "memory": memory,
            "memory_peak": self.memory_peak,
            "procs": len(procs),
        }
