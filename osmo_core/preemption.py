"""Which LOW work to preempt so that waiting NORMAL or HIGH work fits: pure functions, no engine
state (engine/preempt.py acts on the answer).

A candidate is one unit of running LOW work: a task, or a barrier group's tasks together (a
gang goes as a whole). The answer is the fewest units, then the youngest: the youngest single
unit whose room suffices; else the youngest units one by one until the work fits, then, oldest
first, each one the work fits without is spared. Every step is a simulation (`fits`), so
nothing is chosen unless preempting it really makes room.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .scheduler import Alloc

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Candidate(Generic[K]):
    """A unit of running LOW work: `key` names it for the caller, `started` (epoch seconds) is
    when its youngest task started, `allocs` what preempting it gives back."""

    key: K
    started: float
    allocs: tuple[Alloc, ...]


def _freed(units: Sequence[Candidate[K]]) -> list[Alloc]:
    return [a for c in units for a in c.allocs]


def choose_victims(
    candidates: Sequence[Candidate[K]], fits: Callable[[list[Alloc]], bool]
) -> list[Candidate[K]] | None:
    """The units to preempt, youngest first; None when even all of them would not make room
    (then nothing is preempted). `fits(freed)`: whether the waiting work fits once `freed` is
    given back. At most 3 simulations per candidate."""
    youngest = sorted(candidates, key=lambda c: c.started, reverse=True)
    if not youngest or not fits(_freed(youngest)):
        return None
    for c in youngest:
        if fits(list(c.allocs)):
            return [c]
    chosen: list[Candidate[K]] = []
    for c in youngest:
        chosen.append(c)
        if fits(_freed(chosen)):
            break
    for c in sorted(chosen, key=lambda c: c.started):  # spare the oldest that are not needed
        rest = [x for x in chosen if x is not c]
        if fits(_freed(rest)):
            chosen = rest
    return chosen


def grace_of(spec_grace: float | None, pool_grace: float) -> float:
    """Seconds between SIGTERM and SIGKILL for a preempted task: its resource's
    `preemptionGrace`, else its pool's `preemption_grace`."""
    return pool_grace if spec_grace is None else spec_grace


def preempted_message(by_workflow: str, by_tasks: Sequence[str], priority: str, pool: str) -> str:
    """What a preempted task's status says: who took its room."""
    tasks = ", ".join(by_tasks)
    return f"preempted by {priority} workflow {by_workflow} (task {tasks}) in pool {pool}"
