"""Prometheus metrics of the control plane, served by jupyter_server at `{base_url}metrics`.

jupyter_server already serves prometheus_client's default registry at `/metrics` and records
`http_request_duration_seconds{method, handler, status_code}` for every request, this API's
included (e.g. `handler="osmo_jupyter.server.workflows.WorkflowHandler"`): that histogram is the API
latency, so it is not recorded twice here (`ServerApp.record_http_request_metrics` turns it off).
This module adds gauges read from the Service when Prometheus scrapes, so nothing is counted in
the engine's hot path. A scrape runs on the server's event loop, so it reads nothing that grows
with history except one index scan (workflows by status): task counts come from the engine's
memory, which holds only unfinished workflows.

    osmo_workflows{status}          workflows per status, every status listed (the store)
    osmo_tasks{status}              task attempts of the unfinished workflows per status (the
                                    engine's memory); status="RUNNING" are the tasks running now
    osmo_tasks_cpu_cores{pool}      CPU cores the running commands use, as their agents last
                                    sampled them (task usage); osmo_tasks_memory_bytes{pool}:
                                    their resident memory
    osmo_engine_queue_length        task attempts waiting for capacity
    osmo_pool_queued_tasks{pool}    of them, those waiting in each pool
    osmo_pool_gpus{pool, kind}      kind=capacity (its machines, shared ones included),
                                    quota (absent without one), borrowed (held past the quota)
    osmo_pool_used_gpus{pool, priority}  GPUs running tasks hold, per priority
    osmo_engine_inbox_length        commands and backend events waiting for the engine's round
    osmo_event_loop_lag_seconds     the worst lag of the server's event loop over the last
                                    `LAG_WINDOW` seconds (a probe sleeping `LAG_INTERVAL`)

Who may scrape: with `ServerApp.authenticate_prometheus = True` (the default) `/metrics` is
for admins (`server/metrics.py`'s `MetricsHandler`, in place of jupyter_server's own handler:
resource `metrics` of the server's authorizer, which under `OsmoAuthorizer` admits admins
only): the server's token (`Authorization: token …` or `Bearer …`, as a Prometheus
`authorization` block sends) or an admin's personal access token; 401 without credentials,
403 for a user. Setting it to False lets anyone who can reach the port read these figures
(counts only: no user, workflow or task names), so do that only behind a trusted network.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from osmo_core.service import Service
from osmo_core.states import TaskStatus, WorkflowStatus

log = logging.getLogger(__name__)

LAG_INTERVAL = 0.5  # seconds between two probes of the event loop
LAG_WINDOW = 30.0  # the lag reported is the worst over this many seconds


class ServiceMetrics(Collector):
    """The Service's gauges, registered while the Service runs; `start()` then `stop()`."""

    def __init__(self, service: Service, registry: CollectorRegistry = REGISTRY):
        self.service = service
        self.registry = registry
        self._lags: collections.deque[float] = collections.deque(
            maxlen=int(LAG_WINDOW / LAG_INTERVAL)
        )
        self._probe: asyncio.Task[None] | None = None
        self._registered = False

    def start(self) -> ServiceMetrics:
        """Register the gauges and start the event-loop probe (on the running loop)."""
        try:
            self.registry.register(self)
            self._registered = True
        except ValueError as e:  # a second Service in this process: its figures would clash
            log.warning("osmo: metrics not registered: %s", e)
        self._probe = asyncio.create_task(self._probe_lag(), name="osmo-loop-lag")
        return self

    async def stop(self) -> None:
        if self._registered:
            self.registry.unregister(self)
            self._registered = False
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None

    async def _probe_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            self._lags.append(max(0.0, loop.time() - before - LAG_INTERVAL))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Names only: the registry must not run store queries when it registers us.
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        workflows, tasks, cpu, memory, queue, inbox, lag = self._families()
        svc = self.service
        try:
            by_wf = svc.store.count_workflows_by_status()
        except Exception as e:  # a store that is down must not take /metrics down with it
            log.warning("osmo: metrics could not read the store: %s", e)
        else:
            for wf_status in WorkflowStatus:
                workflows.add_metric([wf_status.value], by_wf.get(wf_status.value, 0))
            yield workflows
        by_task = svc.engine.attempt_counts
        for task_status in TaskStatus:
            tasks.add_metric([task_status.value], by_task.get(task_status.value, 0))
        yield tasks
        for pool, (cores, rss) in sorted(svc.engine.usage_by_pool.items()):
            cpu.add_metric([pool], cores)
            memory.add_metric([pool], rss)
        yield cpu
        yield memory
        queue.add_metric([], svc.engine.queue_length)
        inbox.add_metric([], svc.engine.inbox_length)
        yield queue
        yield inbox
        yield from self._pools()
        if self._lags:
            lag.add_metric([], max(self._lags))
            yield lag

    def _pools(self) -> Iterator[GaugeMetricFamily]:
        """Per pool: queue length, GPU capacity, quota, borrowed, used per priority."""
        queued = GaugeMetricFamily(
            "osmo_pool_queued_tasks", "Task attempts waiting in the pool", labels=["pool"]
        )
        gpus = GaugeMetricFamily(
            "osmo_pool_gpus", "The pool's GPUs: capacity, quota, borrowed", labels=["pool", "kind"]
        )
        used = GaugeMetricFamily(
            "osmo_pool_used_gpus", "GPUs running tasks hold", labels=["pool", "priority"]
        )
        svc = self.service
        for pool in sorted(svc.pools):
            summary = svc.scheduler.pool_summary(pool)
            queued.add_metric([pool], svc.engine.queued_in(pool))
            gpus.add_metric([pool, "capacity"], summary["capacity"]["gpu"])
            gpus.add_metric([pool, "borrowed"], summary["borrowed"]["gpu"])
            if summary["quota"] and summary["quota"]["gpu"] is not None:
                gpus.add_metric([pool, "quota"], summary["quota"]["gpu"])
            for priority, amount in summary["used"].items():
                used.add_metric([pool, priority], amount["gpu"])
        yield queued
        yield gpus
        yield used

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("osmo_workflows", "Workflows per status", labels=["status"]),
            GaugeMetricFamily(
                "osmo_tasks", "Task attempts of unfinished workflows per status", labels=["status"]
            ),
            GaugeMetricFamily(
                "osmo_tasks_cpu_cores", "CPU cores running tasks use (sampled)", labels=["pool"]
            ),
            GaugeMetricFamily(
                "osmo_tasks_memory_bytes",
                "Resident memory running tasks use (sampled)",
                labels=["pool"],
            ),
            GaugeMetricFamily("osmo_engine_queue_length", "Task attempts waiting for capacity"),
            GaugeMetricFamily(
                "osmo_engine_inbox_length", "Commands and backend events waiting for the engine"
            ),
            GaugeMetricFamily(
                "osmo_event_loop_lag_seconds",
                f"Worst lag of the server's event loop over the last {LAG_WINDOW:g} s",
            ),
        )
