"""`files: [{localpath: ...}]`: read by the client that has the file, never by the server.

A spec names a file of the submitter's machine with `localpath`; the client (the CLI, `Client`,
the magics) reads it and sends it inline as `contents`, as OSMO's client does (so the tokens
in it are substituted; a file that is not UTF-8 text goes as `base64: true`). The server
refuses a spec that still has a `localpath` (`localpath_problems`): it must never read its own
files on behalf of a remote caller.

Reading opens regular files only, without blocking (a FIFO or a device is refused at once,
not waited on) and up to a size bound.
"""

from __future__ import annotations

import base64
import copy
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import Problem, SpecError
from .loader import LoadedSpec, _build, load_spec
from .models import Task, Workflow
from .report import parse_field

MAX_LOCALPATH_BYTES = 16 * 1024 * 1024  # per file; the server's spec size limit applies too


def read_local_file(path: Path, limit: int = MAX_LOCALPATH_BYTES) -> bytes:
    """The bytes of a regular file; OSError (with a reason a user can act on) otherwise."""
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(0, "not a regular file")
        if st.st_size > limit:
            raise OSError(0, f"larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew while read
                raise OSError(0, f"larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _tasks(workflow: Workflow) -> Iterator[tuple[str, Task]]:
    for gi, g in enumerate(workflow.groups or []):
        for ti, t in enumerate(g.tasks):
            yield f"workflow.groups[{gi}].tasks[{ti}]", t
    for ti, t in enumerate(workflow.tasks or []):
        yield f"workflow.tasks[{ti}]", t


def localpath_fields(workflow: Workflow) -> list[str]:
    """The field path of every `localpath` left in the workflow."""
    return [
        f"{where}.files[{i}].localpath"
        for where, task in _tasks(workflow)
        for i, f in enumerate(task.files)
        if f.localpath is not None
    ]


def localpath_problems(loaded: LoadedSpec) -> list[Problem]:
    """One located problem per `localpath`: the server refuses them (without reading them)."""
    return [
        loaded.locate(
            Problem(
                "`localpath` names a file of the submitter's machine; the server does not read "
                "files for a caller",
                field=field,
                hint="submit with `osmo workflow submit FILE` or `Client().submit(path)`, which "
                "send the file inline, or give its `contents:`",
            )
        )
        for field in localpath_fields(loaded.workflow)
    ]


def inline_localpaths(
    source: str | Mapping[str, Any],
    *,
    base: Path,
    file: str | None = None,
    set_values: dict[str, Any] | None = None,
    limit: int = MAX_LOCALPATH_BYTES,
) -> tuple[str | Mapping[str, Any], dict[str, Any] | None]:
    """(spec, set_values) to send: unchanged without `localpath`; otherwise the spec rendered
    here (set_values used up) as a mapping with each file inline, read relative to `base`.

    SpecError (located) on a bad spec or a file that cannot be read.
    """
    if isinstance(source, str) and "localpath" not in source:
        return source, set_values  # the common case: no parse on the client
    loaded = load_spec(source, file=file, set_values=set_values)
    fields = localpath_fields(loaded.workflow)
    if not fields:
        return source, set_values
    data = _raw(loaded, source)
    problems: list[Problem] = []
    for field in fields:
        entry = _at(data, field.rpartition(".")[0])
        if "localpath" not in entry:
            continue  # one entry shared through a YAML anchor: already inline
        path = (base / str(entry["localpath"])).expanduser()
        try:
            raw = read_local_file(path, limit)
        except OSError as e:
            reason = e.strerror or str(e)
            problems.append(loaded.locate(Problem(f"cannot read {path}: {reason}", field=field)))
            continue
        del entry["localpath"]
        try:  # text, as OSMO's CLI inlines it: its {{output}}, {{input:N}}... are substituted
            entry["contents"] = raw.decode("utf-8")
        except UnicodeDecodeError:  # binary (OSMO's CLI could not read it): sent as it is
            entry["contents"], entry["base64"] = base64.b64encode(raw).decode(), True
    if problems:
        raise SpecError(problems)
    return data, None


def _raw(loaded: LoadedSpec, source: str | Mapping[str, Any]) -> dict[str, Any]:
    """The spec as plain data, after templating (what the server would validate)."""
    if isinstance(source, Mapping):
        return {k: copy.deepcopy(v) for k, v in source.items() if k != "default-values"}
    data, _ = _build(loaded.rendered, loaded.file or "<spec>")  # the server's YAML semantics
    assert isinstance(data, dict)  # loaded already: it is valid
    data.pop("default-values", None)
    return data


def _at(data: Any, field: str) -> dict[str, Any]:
    node = data
    for seg in parse_field(field):
        node = node[seg]
    assert isinstance(node, dict)
    return node
