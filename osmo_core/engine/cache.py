"""The task cache, and reuse: attempts that do not run because another attempt's outputs serve.

A task with `cache: true` (its own, or its workflow's) gets a key when its group starts: the
sha256 of what decides its outputs, resources left out: image, command and args, environment,
`files` contents, credentials' names, where its outputs go, and the *contents* of its inputs:

- `{task: X}`: X's output folder, read here file by file (sha256 of each path and its bytes);
  a folder on another host (SSH, Kubernetes) is not readable here, so such a task runs;
- a URL on a local path or `memory://`: its files' bytes, the same way;
- a URL in object storage: the checksums the store keeps (S3's ETag, Azure's Content-MD5),
  with each object's path and size;
- a dataset: not hashed yet, so the task runs (the `task.cache` event says why).

Placeholders are resolved first, so a task that uses `{{workflow_id}}` never hits across
workflows. Entries are per user: a hit reuses an attempt of the same user's workflows. A group
is reused from the cache only when every one of its tasks hits (a group's lead ending stops its
peers, so half a group cannot be reused). A miss stores the key on the attempt; the attempt is
a cache entry once it is COMPLETED, which the engine records only after its backend reported
the end, i.e. after the outputs were written: an engine that dies first leaves no entry
(`Store.cache_entry`).

A reused attempt (cache hit, or a restart keeping a completed group) moves straight to
COMPLETED with `reused_from` naming the attempt that ran, and that attempt's output, workdir
and log paths: downstream `{{input:N}}` reads the outputs where they are, nothing is copied.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..backends.base import Backend
from ..config import OsmoConfig
from ..dag import WorkflowDAG
from ..data.credentials import match_resolved, storage_options
from ..data.storage import is_local, open_store
from ..errors import InputError, Problem
from ..spec.models import Workflow
from ..states import TaskStatus
from ..wire import LaunchInfo, attempt_key
from .launch import file_contents, resolver
from .runs import Attempt, GroupRun

if TYPE_CHECKING:
    from sqlalchemy import RowMapping

    from .loop import Engine

log = logging.getLogger("osmo.engine")
T = TaskStatus
KEY_VERSION = 1  # part of every key: a change of what is hashed must not hit old entries
_CHECKSUMS = ("ETag", "etag", "content_md5", "md5")  # what S3 and Azure listings carry


class NotHashable(Exception):
    """An input whose contents the cache cannot hash: the task runs."""


@dataclass
class KeyPlan:
    """What an attempt's key is made of: the spec's part, resolved in the engine's loop, and
    the inputs to read, off it (`("dir", path)`, `("url", url, options)`, `("off", why)`)."""

    att: Attempt
    spec_part: dict[str, Any]
    inputs: list[tuple[Any, ...]]


@dataclass
class CacheCheck:
    att: Attempt
    key: str | None
    reason: str | None  # why there is no key
    entry: RowMapping | None  # the attempt that ran with this key


def reuse_source(row: RowMapping) -> str:
    """The attempt key that ran, for a row that is reused (its own `reused_from`) or not."""
    return row["reused_from"] or attempt_key(row["workflow_id"], row["name"], row["retry_id"])


def restart_reuse(
    spec: Workflow,
    group_rows: list[RowMapping],
    task_rows: list[RowMapping],
    from_task: str | None = None,
) -> dict[str, RowMapping]:
    """What a restart keeps of an ended workflow: task -> its last attempt's row, for every
    group that COMPLETED with each of its tasks' last attempts COMPLETED, whose upstream groups
    are kept too, and that is neither `from_task`'s group nor downstream of it (OSMO keeps the
    groups that did not fail; a group whose lead ended before a peer finished is run again
    here, so no reused task stands for outputs that were never written)."""
    dag = WorkflowDAG.build(spec)
    groups = {g.name: g for g in spec.all_groups()}
    rerun: set[str] = set()
    if from_task is not None:
        owner = {t.name: g.name for g in groups.values() for t in g.tasks}
        start = owner.get(from_task)
        if start is None:
            # bad input about a workflow that exists: 422 naming the field, not a 404
            raise InputError(
                Problem(
                    f"--from: the workflow has no task {from_task!r}",
                    field="from_task",
                    hint=f"its tasks: {', '.join(sorted(owner))}",
                )
            )
        rerun = {start} | dag.downstream(start)
    completed = {r["name"] for r in group_rows if r["status"] == T.COMPLETED.value}
    last = {r["name"]: r for r in task_rows}  # rows come in attempt order: the last wins
    kept: dict[str, RowMapping] = {}
    kept_groups: set[str] = set()
    for name in dag.topo_order():
        rows = [last.get(t.name) for t in groups[name].tasks]
        if (
            name in completed
            and name not in rerun
            and dag.upstream(name) <= kept_groups
            and all(r is not None and r["status"] == T.COMPLETED.value for r in rows)
        ):
            kept_groups.add(name)
            kept.update({r["name"]: r for r in rows if r is not None})
    return kept


def plan_key(
    att: Attempt,
    config: OsmoConfig,
    backends: dict[str, Backend],
    own: Mapping[str, tuple[str, dict[str, str]]],
) -> KeyPlan:
    """`own`: the owner's credentials, as for launch_request (their URLs are read with them)."""
    task = att.task
    spec, wf = task.spec, task.group.workflow
    resolve = resolver(task, backends)
    creds = {**config.credentials, **{name: form for name, (_, form) in own.items()}}
    inputs: list[tuple[Any, ...]] = []
    for i, inp in enumerate(spec.inputs):
        if inp.task:
            up = wf.tasks[inp.task].current
            if up.info is None or not up.info.output:
                inputs.append(("off", f"input {i}: task {inp.task!r} has no output folder"))
            else:
                inputs.append(("dir", up.info.output))
        elif inp.url:
            url = resolve(inp.url)
            name = match_resolved(creds, inp.url, url)
            inputs.append(("url", url, storage_options(creds.get(name) if name else None, url)))
        else:
            inputs.append(("off", f"input {i}: dataset inputs are not hashed by the cache"))
    outputs = [
        {"url": resolve(o.url)} if o.url else {"dataset": o.dataset and o.dataset.model_dump()}
        for o in spec.outputs
    ]
    part = {
        "v": KEY_VERSION,
        "image": spec.image,
        "argv": [resolve(a) for a in [*spec.command, *spec.args]],
        "env": {k: resolve(v) for k, v in sorted(spec.environment.items())},
        "files": [
            [path, hashlib.sha256(data).hexdigest()] for path, data in file_contents(spec, resolve)
        ],
        "credentials": sorted(spec.credentials),
        "outputs": outputs,
        "regexes": [inp.regex for inp in spec.inputs],
    }
    return KeyPlan(att, part, inputs)


def _digest_tree(fs: Any, root: str, *, contents: bool) -> str:
    """sha256 over a folder's (or one file's) files, in path order: their bytes (`contents`),
    else the checksum the store keeps for each."""
    h = hashlib.sha256()
    found = fs.find(root, detail=True) if fs.isdir(root) else {root: fs.info(root)}
    for path in sorted(found):
        rel = os.path.relpath(path, root) if path != root else "."
        h.update(rel.encode() + b"\0")
        if contents:
            with fs.open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        else:
            info = found[path]
            stored = next((info[k] for k in _CHECKSUMS if info.get(k)), None)
            if stored is None:
                raise NotHashable(f"{path}: the store keeps no checksum for it")
            h.update(f"{stored}:{info.get('size')}".encode())
        h.update(b"\0")
    return h.hexdigest()


def _digest_input(item: tuple[Any, ...]) -> str:
    kind = item[0]
    if kind == "off":
        raise NotHashable(item[1])
    if kind == "dir":
        fs, root = open_store(item[1])
        if not fs.exists(root):
            raise NotHashable(f"{item[1]} is not on this machine")
        return _digest_tree(fs, root, contents=True)
    fs, root = open_store(item[1], **item[2])
    if not fs.exists(root):
        raise NotHashable(f"{item[1]} does not exist")
    # bytes on this machine are read; object stores' own checksums spare a download
    local = is_local(fs) or urlsplit(item[1]).scheme == "memory"
    return _digest_tree(fs, root, contents=local)


def check(plan: KeyPlan, store: Any) -> CacheCheck:
    """The key (reading the inputs) and the entry it finds: run off the engine's loop."""
    try:
        digests = [_digest_input(item) for item in plan.inputs]
    except NotHashable as e:
        return CacheCheck(plan.att, None, str(e), None)
    except Exception as e:  # unreadable, unreachable: the task runs and its transfer says why
        return CacheCheck(plan.att, None, f"inputs not hashed: {type(e).__name__}: {e}", None)
    body = json.dumps({**plan.spec_part, "inputs": digests}, sort_keys=True, default=str)
    key = hashlib.sha256(body.encode()).hexdigest()
    user = plan.att.task.group.workflow.user
    return CacheCheck(plan.att, key, None, store.cache_entry(key, user))


class TaskCache:
    """The Engine's task cache and reuse (see the module docstring).

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    def _group_cached(self: Engine, g: GroupRun) -> bool:
        return all(g.workflow.spec.cached(t.spec) for t in g.tasks)

    def _check_cache(self: Engine, g: GroupRun) -> None:
        """The group's tasks are PROCESSING: look their keys up, off the loop."""
        plans = []
        for t in g.tasks:
            try:
                own = self.own_credentials(g.workflow.user)
                plans.append(plan_key(t.current, self.config, self.backends, own))
            except Exception as e:  # e.g. bad base64: the launch fails and says why
                log.info("task cache: no key for %s: %s", t.current.key, e)
                self._post(("cache_checked", g, [CacheCheck(t.current, None, str(e), None)]))
                return
        self._spawn(self._lookup(g, plans), f"task-cache lookup of {g.workflow.id}/{g.name}")

    async def _lookup(self: Engine, g: GroupRun, plans: list[KeyPlan]) -> None:
        checks = await asyncio.to_thread(lambda: [check(p, self.store) for p in plans])
        self._post(("cache_checked", g, checks))

    def _on_cache_checked(self: Engine, g: GroupRun, checks: list[CacheCheck]) -> None:
        if any(t.current.status != T.PROCESSING for t in g.tasks):
            return  # cancelled (or ended otherwise) meanwhile
        hit = len(checks) == len(g.tasks) and all(c.entry is not None for c in checks)
        wf = g.workflow
        for c in checks:
            if hit:
                reason = None
            elif c.key is None:
                reason = c.reason
            elif c.entry is None:
                reason = "no completed attempt has this key"
            else:
                reason = "another task of the group missed"
            self._event(
                "task.cache",
                wf,
                group=g.name,
                task=c.att.task.name,
                retry_id=c.att.retry_id,
                result="hit" if hit else ("miss" if c.key else "off"),
                key=c.key,
                reused_from=reuse_source(c.entry) if hit and c.entry is not None else None,
                reason=reason,
            )
        if hit:
            for c in checks:
                assert c.entry is not None
                self._reuse(c.att, c.entry, "cache hit", key=c.key)
            self._group_follows(g)
            return
        for c in checks:
            if c.key is not None:
                c.att.cache_key = c.key
                self._save(c.att, cache_key=c.key)
        self._queue_group(g)

    def _reuse(
        self: Engine, att: Attempt, row: RowMapping, why: str, key: str | None = None
    ) -> None:
        """End `att` COMPLETED with the outputs of the attempt `row` (or the one it reused)."""
        source = reuse_source(row)
        att.reused_from = source
        att.cache_key = key
        att.info = LaunchInfo(att.task.name, row["workdir"], row["output_path"], row["log_path"])
        self._save(
            att,
            reused_from=source,
            cache_key=key,
            backend=row["backend"],
            node=row["node"],
            workdir=row["workdir"],
            output_path=row["output_path"],
            log_path=row["log_path"],
        )
        message = f"{why}: outputs of {source}"
        self._set_task(att, T.COMPLETED, exit_code=0, message=message, follow=False)

    async def clear_cache(self: Engine, *, task: str | None, user: str | None) -> int:
        """Forget the cache entries of `task` (all when None) in `user`'s workflows (everyone's
        when None); how many there were."""
        return await self._call(self._clear_cache, task, user)

    def _clear_cache(self: Engine, task: str | None, user: str | None) -> int:
        self._flush()  # this round's rows first: the clear is its own transaction
        for att in self._attempts.values():  # a running one must not become an entry later
            wf = att.task.group.workflow
            if task in (None, att.task.name) and user in (None, wf.user):
                att.cache_key = None
        n = self.store.clear_cache(task=task, user=user)
        log.info("task cache: %d entries cleared (task %s, user %s)", n, task, user)
        return n
