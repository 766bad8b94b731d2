"""Live widgets (anywidget): `WorkflowMonitor` for one workflow, `WorkflowList` for many."""

from __future__ import annotations

from .monitor import WorkflowMonitor
from .workflow_list import WorkflowList

__all__ = ["WorkflowList", "WorkflowMonitor"]
