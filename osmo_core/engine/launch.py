"""Launch requests: a task's spec and its placement become what a backend launches.

Placeholders are resolved here: `{{workflow_id}}`, `{{input:<task>}}` (to the input's index) and
`{{host:<task>}}` (where that task's network can be reached).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from .. import containers
from ..backends.base import Backend
from ..config import OsmoConfig, PoolConfig
from ..data.credentials import match as credential_for
from ..data.credentials import match_resolved
from ..data.plan import apart, intermediate, own_url, unshared, upstream_url
from ..scheduler import Scheduler
from ..spec.models import Task, decode_base64
from ..store import Store
from ..wire import CheckpointSpec, FileSpec, InputSpec, LaunchRequest, OutputSpec
from . import policy
from .runs import Attempt, TaskRun, WorkflowRun

_TOKEN_INPUT_NAME = re.compile(r"\{\{\s*input:([A-Za-z][A-Za-z0-9_.-]*)\s*\}\}")
_TOKEN_WF_ID = re.compile(r"\{\{\s*workflow_id\s*\}\}")
_TOKEN_HOST = re.compile(r"\{\{\s*host:([A-Za-z0-9_.-]+)\s*\}\}")


def launch_request(
    att: Attempt,
    config: OsmoConfig,
    scheduler: Scheduler,
    backends: dict[str, Backend],
    previous: Callable[[str, str], str | None],
    own: Callable[[], Mapping[str, tuple[str, dict[str, str]]]],
) -> LaunchRequest:
    """What the backend placed on by the scheduler (`att.alloc`) is asked to launch.
    `previous(workflow_id, task)`: the output folder of a task of an earlier workflow.
    `own()`: the workflow owner's credentials (auth/user_credentials.py), name -> (kind, agent
    form): a name of theirs wins over the admin's, and the ones the task uses go in its
    request."""
    task = att.task
    wf = task.group.workflow
    spec = task.spec
    resolve = resolver(task, backends)

    creds = _Credentials(config.credentials, own)
    store = config.dataset_store
    pool, far = scheduler.pools[wf.pool], unshared(backends)
    inputs = []
    for i, inp in enumerate(spec.inputs):
        if inp.previous:  # checked at submit: completed, readable by the user, on a shared disk
            inputs.append(InputSpec(i, path=previous(*inp.previous), regex=inp.regex))
        elif inp.task and far and apart(wf.spec, wf.tasks[inp.task].spec, spec, pool, far):
            written, url = upstream_of(config, wf.tasks[inp.task])  # in storage (data/plan.py)
            cred = match_resolved(creds.all, written, url)
            inputs.append(InputSpec(i, url=url, regex=inp.regex, credential=cred))
        elif inp.task:
            up = wf.tasks[inp.task].current
            inputs.append(InputSpec(i, path=up.info.output if up.info else None, regex=inp.regex))
        elif inp.url:
            url = resolve(inp.url)
            cred = match_resolved(creds.all, inp.url, url)
            inputs.append(InputSpec(i, url=url, regex=inp.regex, credential=cred))
        elif inp.dataset:
            ds = inp.dataset
            inputs.append(
                InputSpec(
                    i,
                    dataset=resolve(ds.name),
                    store=store,
                    regex=ds.regex or inp.regex,
                    credential=credential_for(creds.all, store),
                )
            )
    outputs = []
    for i, out in enumerate(spec.outputs):
        if out.url:
            url = resolve(out.url)
            cred = match_resolved(creds.all, out.url, url)
            outputs.append(OutputSpec(i, url=url, regex=out.regex, credential=cred))
        elif out.dataset:
            ds = out.dataset
            outputs.append(
                OutputSpec(
                    i,
                    dataset=resolve(ds.name),
                    store=store,
                    regex=ds.regex or out.regex,
                    path=ds.path,
                    credential=credential_for(creds.all, store),
                )
            )
    if far and config.intermediate_url and own_url(spec) is None and read_apart(task, pool, far):
        url = intermediate(config.intermediate_url, wf.id, task.name, att.retry_id)
        outputs.append(OutputSpec(len(outputs), url=url, credential=credential_for(creds.all, url)))
    checkpoints = [
        CheckpointSpec(
            c.path,
            resolve(c.url),
            c.frequency,
            c.regex,
            match_resolved(creds.all, c.url, resolve(c.url)),
        )
        for c in spec.checkpoint
    ]
    files = [
        FileSpec(path, data, 0o755 if path.endswith(".sh") else 0o644)
        for path, data in file_contents(spec, resolve)
    ]
    env = {k: resolve(v) for k, v in spec.environment.items()}
    env.update(
        OSMO_WORKFLOW_ID=wf.id,
        OSMO_TASK_NAME=task.name,
        OSMO_GROUP_NAME=task.group.name,
        OSMO_RETRY_ID=str(att.retry_id),
    )
    res = wf.spec.resource_of(spec)
    assert att.alloc is not None
    moved: list[InputSpec | OutputSpec | CheckpointSpec] = [*inputs, *outputs, *checkpoints]
    used = {*spec.credentials, *(m.credential for m in moved if m.credential)}
    secrets = {
        name: form
        for name, (kind, form) in (creds.own if used or spec.image else {}).items()
        if name in used or (kind == "REGISTRY" and spec.image)
    }
    return LaunchRequest(
        hold=policy.launch_hold(spec.interactive, spec.debug),
        key=att.key,
        argv=[resolve(a) for a in [*spec.command, *spec.args]],
        env=env,
        files=files,
        inputs=inputs,
        image=spec.image,
        gpus=list(att.alloc.gpus),
        cpu=res.cpu,
        memory=res.memory,
        storage=res.storage,
        node=att.alloc.node,
        pool=wf.pool,
        platform=scheduler.platform_of(wf.pool, res),
        user=wf.user,
        group_size=len(task.group.tasks) if task.group.spec.barrier else 1,
        outputs=outputs,
        checkpoints=checkpoints,
        credentials=dict(spec.credentials),
        secrets=secrets,
        containers=containers.mode_of(
            config.containers, scheduler.pools[wf.pool], scheduler.platform_of(wf.pool, res)
        ),
    )


def previous_output(store: Store, wf_id: str, task: str) -> str | None:
    """The output folder of the latest attempt of `task` in the earlier workflow `wf_id`."""
    attempts = store.tasks_of(wf_id, task)
    return attempts[-1]["output_path"] if attempts else None


def resolver(task: TaskRun, backends: dict[str, Backend]) -> Callable[[str], str]:
    """The task's placeholders resolved in a text: `{{workflow_id}}`, `{{input:<task>}}` (to
    the input's index), `{{host:<task>}}`."""
    wf = task.group.workflow
    input_index = {inp.task_name: i for i, inp in enumerate(task.spec.inputs) if inp.task}

    def resolve(text: str) -> str:
        text = _TOKEN_WF_ID.sub(wf.id, text)
        text = _TOKEN_INPUT_NAME.sub(
            lambda m: (
                f"{{{{input:{input_index[m.group(1)]}}}}}"
                if m.group(1) in input_index
                else m.group(0)
            ),
            text,
        )
        return _TOKEN_HOST.sub(lambda m: host_of(backends, wf, m.group(1)), text)

    return resolve


def file_contents(spec: Task, resolve: Callable[[str], str]) -> list[tuple[str, bytes]]:
    """(path, bytes) of each `files:` entry, placeholders resolved."""
    out = []
    for i, f in enumerate(spec.files):
        try:
            data = (
                decode_base64(f.contents or "") if f.base64 else resolve(f.contents or "").encode()
            )
        except ValueError as e:  # a spec validated before base64 was checked
            raise ValueError(f"files[{i}] ({f.path}): contents are not valid base64: {e}") from e
        out.append((f.path, data))
    return out


class _Credentials:
    """The admin's credentials and, over them, the owner's, opened when first needed: a task
    that moves no data, names none and pulls no image costs no store read."""

    def __init__(
        self,
        admin: Mapping[str, dict[str, Any]],
        own: Callable[[], Mapping[str, tuple[str, dict[str, str]]]],
    ):
        self._admin, self._own = admin, own

    @functools.cached_property
    def own(self) -> dict[str, tuple[str, dict[str, str]]]:
        return dict(self._own())

    @functools.cached_property
    def all(self) -> dict[str, dict[str, Any]]:
        return {**self._admin, **{name: form for name, (_, form) in self.own.items()}}


def upstream_of(config: OsmoConfig, up: TaskRun) -> tuple[str, str]:
    """Where a task apart from `up` reads its output in storage: (as written, resolved). A
    reused attempt's output is where the attempt it reuses wrote it."""
    att = up.current
    wf_id, retry_id = up.group.workflow.id, att.retry_id
    if att.reused_from is not None:
        wf_id, _, retry = att.reused_from.rsplit("/", 2)
        retry_id = int(retry)
    written = upstream_url(config.intermediate_url, wf_id, up.spec, retry_id)
    return written, _TOKEN_WF_ID.sub(wf_id, written)


def read_apart(task: TaskRun, pool: PoolConfig, far: set[str]) -> bool:
    """Whether a task reads `task`'s output from a backend of `far` (or `task` runs on one):
    then its output must go to storage. Only the groups downstream of its own are looked at."""
    wf = task.group.workflow
    groups = [task.group.name, *wf.dag.graph.successors(task.group.name)]
    return any(
        inp.task == task.name and apart(wf.spec, task.spec, t.spec, pool, far) is not None
        for g in groups
        for t in wf.groups[g].tasks
        for inp in t.spec.inputs
    )


def host_of(backends: dict[str, Backend], wf: WorkflowRun, task: str) -> str:
    """Where `{{host:<task>}}` reaches that task of the workflow."""
    alloc = wf.tasks[task].current.alloc if task in wf.tasks else None
    if alloc is None:
        return "localhost"
    return backends[alloc.backend].host_of(wf.tasks[task].current.key, alloc.node)
