"""The agent's wire protocol: newline-delimited JSON over any asyncio stream.

One UTF-8 JSON object per line, so the same protocol rides a Unix socket today and an SSH
channel later. A client sends requests; the agent answers each one and pushes events to every
connected client.

Requests and responses::

    {"id": N, "op": OP, ...args}   ->   {"id": N, "ok": true, ...result}
                                        {"id": N, "ok": false, "error": "message"}
    {"op": OP, ...args}            ->   nothing, or {"id": null, "ok": false, "error": ...}
                                        (a notification: answered only when it fails)

    hello                       -> {version, protocol, pid, hostname, arch, cpus, memory,
                                    gpus: [{index, name}], root, running (tasks),
                                    container_runtime: "docker" | "podman" | null}
    launch   {req}              -> {info}            req: LaunchRequest, info: LaunchInfo (as dicts)
    cancel   {key, grace}       -> {}                SIGTERM the group, SIGKILL after grace seconds
                                                     (a held attempt: end the hold, keep its code)
    release  {key}              -> {}                held attempt done: outputs, then exited
    status   {keys: [...]}      -> {states: {key: AttemptState dict (+ "pid" while running)}}
    running                     -> {keys: [...]}     attempts running or held now (reconciliation)
    log      {key, start, limit} -> {lines: [[ts, stream, text], ...]}  the attempt's durable log
                                                     from 0-based line `start` (a pod's agent:
                                                     the control plane cannot read its disk)
    ack      {keys: [...]}      -> {}                the control plane has these attempts' ends: the
                                                     agent may forget them (once durably written);
                                                     sent as a notification (no id, no answer)
    shutdown {force}            -> {}                force: kill running tasks first; without it
                                                     the agent refuses while tasks run or
                                                     exit records wait to be written

Events (no id) go to every client. Per key: started, its log lines, then exited; or, when the
command could not start, one "system" log line and start_failed. An exit is sent only once
both pipes are closed, so no line of an attempt follows its end::

    {"ev": "started", "key", "pid", "ts"}
    {"ev": "log", "key", "n", "ts", "stream": "stdout" | "stderr" | "system", "text"}
    {"ev": "held", "key", "exit_code", "signal", "ts"}   (launch's `hold`: the command ended,
                                                          the attempt waits; exited follows)
    {"ev": "exited", "key", "exit_code", "signal", "ts", "message"?}
    {"ev": "start_failed", "key", "message", "ts", "reason"?}  (reason "image_pull": the
                                                          image could not be pulled)
    {"ev": "transfer", "key", "direction": "download" | "upload" | "checkpoint", "url",
     "dataset"?, "files", "bytes", "seconds", "error"?, "ts"}
     (+ "final": false, "files_total", "bytes_total" for a progress report while it runs)
    {"ev": "storage", "key", "message", "recovered", "ts"}   (the attempt's records could not
     be written (EROFS, ENOSPC, EIO): the agent keeps its end in memory and retries; recovered:
     written now)
    {"ev": "usage", "key", "ts", "cpu", "cpu_seconds", "memory", "memory_peak", "procs"}
     (a running command's process tree, every OSMO_METRICS_INTERVAL seconds: agent/usage.py)

An exit's `message` says why the agent ended it (a failed transfer: exit_codes.py); a
`transfer` is one finished (or failed) input, output or checkpoint transfer, URL redacted.

`ts` is seconds since the epoch; `n` is the 1-based line number in the attempt's log. File
contents travel base64-encoded (`content_b64`). Keys are "<workflow_id>/<task>/<retry_id>".
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import fields
from typing import Any

from ..wire import (
    AttemptState,
    BackendEvent,
    CheckpointSpec,
    Exited,
    FileSpec,
    Held,
    InputSpec,
    LaunchInfo,
    LaunchRequest,
    LogLine,
    OutputSpec,
    Started,
    StartFailed,
    StorageTrouble,
    Transfer,
    Usage,
)

# Bumped whenever the agent's behaviour changes incompatibly (ops, launch fields, events), so a
# long-lived agent started by older code of the same release is replaced rather than trusted.
PROTOCOL = 7

#: Stream buffer limit for one message: a 64 KiB log line escapes to at most ~6x its size, and
#: a launch request carries its files inline.
MAX_MESSAGE = 64 * 1024 * 1024


class RequestError(Exception):
    """A request the agent refuses; it is answered with ok: false and this message."""


_KEY_PART = re.compile(r"[A-Za-z0-9_.-]+")


def check_key(key: str) -> str:
    """Refuse a key that is not "<workflow_id>/<task>/<retry_id>" of safe path parts."""
    parts = key.split("/")
    if len(parts) != 3 or any(not _KEY_PART.fullmatch(p) or p in (".", "..") for p in parts):
        raise ValueError(f"invalid attempt key {key!r}: want <workflow_id>/<task>/<retry_id>")
    return key


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    msg = json.loads(line)
    if not isinstance(msg, dict):
        raise ValueError("a message must be a JSON object")
    return msg


def request_to_wire(req: LaunchRequest) -> dict[str, Any]:
    return {  # not dataclasses.asdict: its deep copy is a visible share of a launch
        **vars(req),
        "files": [
            {"path": f.path, "mode": f.mode, "content_b64": base64.b64encode(f.content).decode()}
            for f in req.files
        ],
        "inputs": [vars(i) for i in req.inputs],
        "outputs": [vars(o) for o in req.outputs],
        "checkpoints": [vars(c) for c in req.checkpoints],
    }


def request_from_wire(wire: dict[str, Any]) -> LaunchRequest:
    args = dict(wire)
    args["files"] = [
        FileSpec(f["path"], base64.b64decode(f["content_b64"]), f.get("mode", 0o644))
        for f in wire.get("files", [])
    ]
    args["inputs"] = [InputSpec(**i) for i in wire.get("inputs", [])]
    args["outputs"] = [OutputSpec(**o) for o in wire.get("outputs", [])]
    args["checkpoints"] = [CheckpointSpec(**c) for c in wire.get("checkpoints", [])]
    return LaunchRequest(**args)


def state_from_wire(wire: dict[str, Any]) -> AttemptState:
    known = {f.name for f in fields(AttemptState)}
    args = {k: v for k, v in wire.items() if k in known}
    if args.get("info") is not None:
        args["info"] = LaunchInfo(**args["info"])
    return AttemptState(**args)


def event_from_wire(msg: dict[str, Any]) -> BackendEvent:
    kind, key, ts = msg["ev"], msg["key"], msg.get("ts", 0.0)
    if kind == "log":
        return LogLine(key, msg["n"], ts, msg["stream"], msg["text"])
    if kind == "started":
        return Started(key, msg.get("pid"), ts)
    if kind == "exited":
        return Exited(key, msg["exit_code"], ts, msg.get("signal"), msg.get("message", ""))
    if kind == "held":
        return Held(key, msg["exit_code"], ts, msg.get("signal"))
    if kind == "usage":
        return Usage(
            key,
            ts,
            msg["cpu"],
            msg["cpu_seconds"],
            msg["memory"],
            msg["memory_peak"],
            msg["procs"],
        )
    if kind == "transfer":
        return Transfer(
            key,
            msg["direction"],
            msg["url"],
            files=msg.get("files", 0),
            bytes=msg.get("bytes", 0),
            seconds=msg.get("seconds", 0.0),
            ts=ts,
            error=msg.get("error"),
            dataset=msg.get("dataset"),
            final=msg.get("final", True),
            files_total=msg.get("files_total"),
            bytes_total=msg.get("bytes_total"),
        )
    if kind == "storage":
        return StorageTrouble(key, msg["message"], ts, msg.get("recovered", False))
    if kind == "start_failed":
        return StartFailed(key, msg["message"], ts, msg.get("reason", ""))
    raise ValueError(f"unknown event {kind!r}")
