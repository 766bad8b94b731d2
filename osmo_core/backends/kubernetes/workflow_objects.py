"""The objects a workflow's pods share on one Kubernetes backend: its headless Service (the DNS
names of `{{host:TASK}}`) and, with `gang_scheduler`, one PodGroup per barrier group. Created
once by the first launch that needs them, deleted when the workflow's last attempt is done."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ...wire import LaunchRequest
from .cluster import core, create_object
from .pods import (
    LABEL_BACKEND,
    LABEL_WORKFLOW,
    label_value,
    podgroup_for,
    service_for,
    service_name,
)

PodGroupRef = tuple[str, str, str, str]  # group, version, plural, name


class WorkflowObjects:
    def __init__(self, backend: str, namespace: str, config: dict[str, Any]):
        self.backend, self.namespace, self.config = backend, namespace, config
        self._services: set[str] = set()  # workflow ids whose headless Service exists
        self._podgroups: dict[str, set[PodGroupRef]] = {}  # workflow id -> its PodGroups

    async def ensure(self, client_: Any, req: LaunchRequest) -> None:
        """Create what `req`'s pod needs before it is created (a 409 is fine)."""
        from kubernetes import client

        wf = req.key.split("/")[0]
        if wf not in self._services:
            self._services.add(wf)  # first: concurrent launches of one workflow create it once
            try:
                body = service_for(wf, self.namespace, self.backend)
                api = core(client_)
                await create_object(api.create_namespaced_service, self.namespace, body)
            except BaseException:
                self._services.discard(wf)
                raise
        if not (self.config.get("gang_scheduler") and req.group_size > 1):
            return
        group, version, plural, pg = podgroup_for(self.config, req, self.namespace, self.backend)
        made = self._podgroups.setdefault(wf, set())
        ref = (group, version, plural, pg["metadata"]["name"])
        if ref not in made:  # one PodGroup per group, not one create per task
            made.add(ref)  # first: concurrent launches of one group create it once
            create = client.CustomObjectsApi(client_).create_namespaced_custom_object
            try:
                await create_object(create, group, version, self.namespace, plural, pg)
            except BaseException:
                made.discard(ref)
                raise

    async def drop(self, client_: Any, wf: str) -> None:
        """Delete workflow `wf`'s objects, best effort (the reaper finds what is left)."""
        from kubernetes import client

        if wf in self._services:  # once (tasks end together); after a restart: the reaper's
            self._services.discard(wf)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    core(client_).delete_namespaced_service,
                    service_name(wf),
                    self.namespace,
                )
        custom = client.CustomObjectsApi(client_)
        for group, version, plural, name in self._podgroups.pop(wf, set()):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    custom.delete_namespaced_custom_object,
                    group,
                    version,
                    self.namespace,
                    plural,
                    name,
                )

    async def reap(self, client_: Any, selector: str, live: set[str]) -> None:
        """Delete this backend's Services of workflows not in `live` (left by a control
        plane that stopped before cleaning up)."""
        api = core(client_)
        services = await asyncio.to_thread(
            api.list_namespaced_service, self.namespace, label_selector=selector
        )
        keep = {label_value(w) for w in live}
        for svc in services.items:
            labels = svc.metadata.labels or {}
            if labels.get(LABEL_BACKEND) != label_value(self.backend):
                continue
            if labels.get(LABEL_WORKFLOW) not in keep:
                await asyncio.to_thread(
                    api.delete_namespaced_service, svc.metadata.name, self.namespace
                )
