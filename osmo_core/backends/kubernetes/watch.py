"""Following pods with the Kubernetes watch API: one stream per backend, in one thread.

The official client's `Watch().stream` blocks, so it runs in a daemon thread and hands every
event to the event loop with `call_soon_threadsafe`. It lists once (the current pods and a
resourceVersion), then watches from that version; a stream the server ends is resumed from the
last version seen; 410 Gone (that version is too old) lists again. Any other error (the
cluster is unreachable) reports the watcher disconnected and retries after a bounded backoff;
reconnecting lists again, so what happened in between is not missed.

What a pod's status means for its attempt (`classify`) is here too: one place for the mapping
onto OSMO's statuses.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from ...wire import Exited, Lost, Started, StartFailed

IMAGE_ERRORS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}

# (event type, pod) -> None; type is ADDED/MODIFIED/DELETED, or SYNC with (monotonic time the
# list was asked for, the full list of pods).
OnEvent = Callable[[str, Any], None]


class PodWatcher:
    """List, then watch, the pods matching `selector` in `namespace`; forever, until stop()."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        selector: str,
        loop: asyncio.AbstractEventLoop,
        on_event: OnEvent,
        on_connected: Callable[[bool, str], None],
        stream_seconds: int = 300,
        backoff: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self.api, self.namespace, self.selector = api, namespace, selector
        self.loop, self.on_event, self.on_connected = loop, on_event, on_connected
        self.stream_seconds, self.backoff = stream_seconds, backoff
        self.lists = 0  # how many full lists (first one, 410 Gone, reconnects): for tests
        self._stopped = threading.Event()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, name="osmo-k8s-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        # Watch.stop() shuts the socket down, which unblocks the read in the thread; a stream
        # that was only being opened misses it (stream() clears the flag), so repeat.
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            if self._watch is not None:
                self._watch.stop()
            self._thread.join(0.05)

    def _post(self, kind: str, obj: Any) -> None:
        if not self._stopped.is_set():
            self.loop.call_soon_threadsafe(self.on_event, kind, obj)

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        version: str | None = None
        delay = self.backoff[0]
        while not self._stopped.is_set():
            try:
                if version is None:
                    asked = time.monotonic()  # pods created after this may be missing
                    listed = self.api.list_namespaced_pod(
                        self.namespace, label_selector=self.selector
                    )
                    self.lists += 1
                    version = listed.metadata.resource_version
                    self._post("SYNC", (asked, listed.items))
                    self.loop.call_soon_threadsafe(self.on_connected, True, "")
                self._watch = watch.Watch()
                if self._stopped.is_set():
                    return
                for ev in self._watch.stream(
                    self.api.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self.stream_seconds,  # also: the client leaves 410 to us
                ):
                    if self._stopped.is_set():
                        return
                    version = self._watch.resource_version or version
                    if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._post(ev["type"], ev["object"])
                delay = self.backoff[0]
            except ApiException as exc:
                if exc.status == 410:  # Gone: our version is too old; list again
                    version = None
                    continue
                version = None  # relist after reconnecting
                self._disconnected(f"API error {exc.status}: {exc.reason}")
                self._stopped.wait(delay)
                delay = min(delay * 2, self.backoff[1])
            except Exception as exc:  # unreachable, reset connection, ...
                if self._stopped.is_set():
                    return
                version = None
                self._disconnected(f"{type(exc).__name__}: {exc}")
                self._stopped.wait(delay)
                delay = min(delay * 2, self.backoff[1])

    def _disconnected(self, why: str) -> None:
        self.loop.call_soon_threadsafe(self.on_connected, False, why)


def _pending_why(status: Any) -> str:
    """Why a pending pod is not running yet (unschedulable, pulling, ...), for messages."""
    for cond in status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False":
            return f"{cond.reason or 'Unschedulable'}: {cond.message or ''}".strip(": ")
    for cs in status.container_statuses or []:
        if cs.state is not None and cs.state.waiting:
            return f"{cs.state.waiting.reason}: {cs.state.waiting.message or ''}".strip(": ")
    return status.reason or "Pending"


def pending_reason(pod: Any) -> str:
    return _pending_why(pod.status) if pod.status else "Pending"


def classify(key: str, pod: Any) -> Started | Exited | StartFailed | Lost | None:
    """What a pod's status means for the attempt, or None while it is still pending
    (unschedulable or pulling: the task stays where it is until the pod runs)."""
    now = time.time()
    status = pod.status
    if status is None:
        return None
    phase, reason = status.phase, status.reason
    if reason == "Evicted":
        return Lost(key, f"pod Evicted: {status.message or ''}".strip(": "), now, reason="evicted")
    if reason == "NodeLost" or phase == "Unknown":
        return Lost(key, f"node lost: {status.message or 'pod phase Unknown'}", now)
    for cs in status.init_container_statuses or []:  # the agent's (or a template's)
        state = cs.state
        if state and state.waiting and state.waiting.reason in IMAGE_ERRORS:
            why = f"init container {cs.name}: {state.waiting.reason}: {state.waiting.message or ''}"
            return StartFailed(key, why, now, "image_pull")
        if state and state.terminated and state.terminated.exit_code:
            t = state.terminated
            return StartFailed(
                key,
                f"init container {cs.name} failed (exit {t.exit_code}: {t.reason or 'Error'})",
                now,
            )
    for cs in status.container_statuses or []:
        if cs.name != "task" or cs.state is None:
            continue
        if cs.state.waiting and cs.state.waiting.reason in IMAGE_ERRORS:
            why = f"{cs.state.waiting.reason}: {cs.state.waiting.message or ''}"
            return StartFailed(key, why, now, "image_pull")
        if cs.state.terminated:
            t = cs.state.terminated
            if t.reason == "OOMKilled":
                msg = f"OOMKilled: the task went over its memory limit (exit {t.exit_code})"
                return Lost(key, msg, now, reason="evicted")
            return Exited(key, int(t.exit_code), now, message=t.reason or "")
        if cs.state.running:
            return Started(key, ts=now)
    return None
