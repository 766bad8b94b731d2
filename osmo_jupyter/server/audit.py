"""The audit of stepping into a running task: exec, port-forward, terminals, files, proxy.

These routes are authorized like every workflow route (the owner or an admin), checked before
any upgrade so a refusal is an HTTP status with the JSON error body: 404 unknown task, 403
another user's task or an undeclared port, 409 the task is not RUNNING, 502 its agent is
unreachable.
Each is audited: a persisted `task.access` event {user, action, ...} in the workflow's event
stream (exec, terminal, port-forward: one per session; proxy and file reads/writes: at most one
per minute per user, task and port or kind; a files listing: one each).
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from osmo_core.service import Service


AUDIT_EVERY = 60.0  # seconds: proxy requests and file reads/writes are audited once per window
# Per Service: workflow ids are unique within one store only (a second Service in the process,
# as in the tests, must not have its first access hidden by another store's window)
_windows: weakref.WeakKeyDictionary[Service, dict[tuple[str, ...], float]] = (
    weakref.WeakKeyDictionary()
)


async def audit(
    svc: Service,
    user: str,
    wf_id: str,
    task: str,
    action: str,
    *,
    window: str | None = None,
    **detail: Any,
) -> None:
    """A `task.access` event. With a `window` (e.g. the port), at most one per AUDIT_EVERY
    seconds for the same user, task, action and window: a web page is dozens of requests, an
    rsync one request per file."""
    if window is not None:
        _audited = _windows.setdefault(svc, {})
        key = (user, wf_id, task, action, window)
        now = time.monotonic()
        if now - _audited.get(key, -AUDIT_EVERY) < AUDIT_EVERY:
            return
        _audited[key] = now
        if len(_audited) > 10_000:  # forget old windows
            for k in [k for k, t in _audited.items() if now - t >= AUDIT_EVERY]:
                del _audited[k]
    await svc.record_access(user, wf_id, task, action, **detail)
