"""The engine: the only writer of workflow, group and task state (see engine/loop.py).

loop.py         Engine: inbox, rounds, commit then announce, the commands' entry points
runs.py         in-memory run records (WorkflowRun, GroupRun, TaskRun, Attempt) and their loading
transitions.py  state changes, each checked against osmo_core.states, and their events
submit.py       submit: checks, the transaction that creates a workflow, its groups' start
groups.py       group phases and ends, downstream, queue and exec timeouts
placement.py    the queue, placement, launches, node refresh
preempt.py      preemption: LOW work stopped to make room for NORMAL/HIGH work, claims, requeue
launch.py       task spec + placement -> LaunchRequest (placeholders resolved)
cache.py        the task cache and reuse: attempts that take another attempt's outputs
facts.py        what backends report: start, exit, hold, loss, logs, transfers, usage
holds.py        interactive and debug holds: done, retry, deadlines
cancel.py       stopping attempts; cancelling a workflow in slices
slices.py       bulk changes (cancel, start) a slice per engine round
recovery.py     restart: reload, reconcile with the backends, resume
reconcile.py    the periodic check that every launched attempt has a process; the lag tick
policy.py       the decisions as pure functions: exit actions, retry budget, holds, groups

The parts (Transitions, Submission, GroupProgress, Placement, Preempting, BackendFacts, Holds,
Cancelling, Recovery, Reconciling, TaskCache) are mixed into `Engine` and never used alone, so
their methods take `self: Engine` (imported under TYPE_CHECKING): mypy then checks each part
against the one declaration of the engine's state in Engine.__init__ and the other parts' real
signatures, with nothing declared twice. mypy calls a self-type that is a subclass an error [misc];
pyproject.toml turns that code off for these modules only.
"""

from .loop import Engine

__all__ = ["Engine"]
