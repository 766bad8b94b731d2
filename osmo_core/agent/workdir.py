"""An attempt's directory on the agent's host: its layout, placeholders, files and inputs.

    ROOT/runs/<workflow_id>/<task>/<retry_id>/
        attempt.json   the request and its LaunchInfo, written before the process starts
        pid            the process id, which is also its process-group id
        exit.json      {exit_code, signal, ts, state, message, log_lines}, written atomically
        log            the durable log (logfile.py)
        output/        {{output}}
        inputs/<N>     {{input:N}}: a symlink to an upstream output directory, or with a regex
                       a directory of symlinks to the matching files only; for a url or
                       dataset input, a directory the agent downloads into (staging.py)
        files/         spec files with absolute paths, rebased here when there is no container
        checkpoints/<N>  checkpoint N's folder when its path is absolute and there is no container
        credentials/<name>/<key>  a credential given as files (spec `credentials: {name: /dir}`),
                       0600, removed when the attempt ends

`inputs/` and `files/` exist only when the request has inputs or absolute files.

With task isolation (agent/identity.py) the task's own folder moves out of the data folder
(0700, the agent's), to TASKS/runs/<workflow_id>/<task>/<retry_id>/ (`--tasks`, folders above
it 0711): owned by the task's uid, 0700, it holds output/, inputs/, files/, checkpoints/ and
credentials/ and is the task's cwd and $HOME. The agent's records (attempt.json, pid, exit.json,
log, held.json) stay in ROOT/runs/<key>/, root's, 0600: a task cannot swap them for links.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..wire import LaunchInfo, LaunchRequest
from .identity import drop_setid
from .protocol import check_key

ATTEMPT, EXIT, LOG, OUTPUT, INPUTS, FILES, CHECKPOINTS, CREDENTIALS = (
    "attempt.json",
    "exit.json",
    "log",
    "output",
    "inputs",
    "files",
    "checkpoints",
    "credentials",
)
_RECORDS = {ATTEMPT, EXIT, EXIT + ".tmp", LOG, CREDENTIALS}
# Inside a container (containers.py), OSMO's paths: {{output}}, {{input:N}} under INPUT_IN/N
# (read-only), and the task's folder as the working directory.
OUTPUT_IN, INPUT_IN, WORKDIR_IN = "/osmo/data/output", "/osmo/data/input", "/osmo/run"

# {{output}} and {{input:N}}, spaces tolerated inside the braces.
_TOKEN = r"\{\{\s*(?:(output)|input:\s*(\d+))\s*\}\}"
# A rebased path only where it is a whole path: not inside /data/tmp/run.sh or /tmp/run.sh.bak.
_PATH_BEFORE, _PATH_AFTER = r"(?<![\w./-])", r"(?![\w.-])"


class PrepareError(Exception):
    """The attempt cannot start; the message becomes its start_failed message."""


def attempt_dir(root: Path, key: str) -> Path:
    return root / "runs" / check_key(key)


def why(e: OSError) -> str:
    """ "EROFS: Read-only file system": what a user can search for, and read."""
    name = errno.errorcode.get(e.errno or 0, type(e).__name__)
    return f"{name}: {e.strerror or e}"


def write_exit(d: Path, record: dict[str, Any]) -> None:
    """An attempt's exit record, atomically: a reader never sees half of it."""
    tmp = d / (EXIT + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, d / EXIT)


def launch_info(
    root: Path, key: str, already_known: bool = False, tasks: Path | None = None
) -> LaunchInfo:
    """`tasks`: where task folders live apart from the agent's records (isolation)."""
    d = attempt_dir(root, key)
    w = attempt_dir(tasks, key) if tasks is not None else d
    return LaunchInfo(key, str(w), str(w / OUTPUT), str(d / LOG), already_known)


@dataclass
class Prepared:
    argv: list[str]
    env: dict[str, str]  # the request's env, resolved; the supervisor adds its own on top
    # (host path, container path, read-only) of what a container needs mounted
    mounts: list[tuple[str, str, bool]] = field(default_factory=list)
    checkpoint_dirs: list[Path] = field(default_factory=list)  # host folder of each checkpoint


class _Rewriter:
    """Resolves placeholders and rebases declared absolute file paths, in one regex pass."""

    def __init__(self, d: Path, rebased: dict[str, str], in_container: bool = False):
        self._output = OUTPUT_IN if in_container else str(d / OUTPUT)
        self._inputs = INPUT_IN if in_container else str(d / INPUTS)
        self._rebased = rebased
        pattern = _TOKEN
        if rebased:
            paths = "|".join(re.escape(p) for p in sorted(rebased, key=len, reverse=True))
            pattern += f"|{_PATH_BEFORE}({paths}){_PATH_AFTER}"
        self._text = re.compile(pattern)
        self._data = re.compile(pattern.encode())

    def _target(self, output: object, index: str | bytes | None, path: object = None) -> str:
        if output:
            return self._output
        if index:
            return f"{self._inputs}/{int(index)}"
        return self._rebased[path.decode() if isinstance(path, bytes) else str(path)]

    def text(self, s: str) -> str:
        if "{{" not in s and not self._rebased:
            return s
        return self._text.sub(lambda m: self._target(*m.groups()), s)

    def data(self, b: bytes) -> bytes:
        if b"{{" not in b and not self._rebased:
            return b
        return self._data.sub(lambda m: self._target(*m.groups()).encode(), b)


def prepare(
    d: Path,
    req: LaunchRequest,
    in_container: bool,
    secret_files: dict[str, dict[str, str]] | None = None,
    private: Path | None = None,
) -> Prepared:
    """Create output/, inputs/, checkpoint folders and the files of `req` under `d`; resolve
    argv and env. `secret_files`: {folder as the task sees it: {file name: content}}.
    `private`: a folder the task cannot enter (the agent's root, with isolation): an input
    there (an SSH host's output mirrored by the control plane) is copied in, not linked."""
    os.mkdir(d / OUTPUT)
    mounts = [
        (m, m, True)
        for i in req.inputs
        if (m := _link_input(d, i.index, i.path, i.url or i.dataset, i.regex, private)) is not None
    ]
    if in_container:
        mounts.append((str(d / OUTPUT), OUTPUT_IN, False))
        mounts += [
            (os.path.realpath(d / INPUTS / str(i.index)), f"{INPUT_IN}/{i.index}", True)
            for i in req.inputs
        ]
    targets: list[tuple[Path, bytes, int]] = []
    rebased: dict[str, str] = {}
    for n, (folder, contents) in enumerate((secret_files or {}).items()):
        host = d / CREDENTIALS / str(n)
        host.mkdir(parents=True, mode=0o700)
        for fname, value in contents.items():
            if "/" in fname or fname in (".", ".."):
                raise PrepareError(f"credential key {fname!r} cannot be a file name")
            targets.append((host / fname, value.encode(), 0o600))
        _place(folder, host, d, in_container, mounts, rebased)
    checkpoint_dirs = []
    for n, c in enumerate(req.checkpoints):
        host = d / CHECKPOINTS / str(n)
        if not os.path.isabs(c.path) and "{{" not in c.path:
            host = _inside(d, c.path, "checkpoint path")
        host.mkdir(parents=True, exist_ok=True)
        if os.path.isabs(c.path):
            _place(c.path, host, d, in_container, mounts, rebased)
        checkpoint_dirs.append(host)
    for f in req.files:
        if os.path.isabs(f.path):
            target = d / FILES / os.path.normpath(f.path).lstrip("/")
            if in_container:
                mounts.append((str(target), f.path, True))
            else:
                rebased[f.path] = str(target)
        else:
            target = _inside(d, f.path, "file")
        targets.append((target, f.content, drop_setid(f.mode)))  # never a setuid program
    rw = _Rewriter(d, rebased, in_container)
    on_host = _Rewriter(d, rebased) if in_container else rw  # the agent's view, for staging
    for n, c in enumerate(req.checkpoints):
        if "{{" in c.path:  # e.g. {{output}}/ckpt
            checkpoint_dirs[n] = Path(on_host.text(c.path))
            checkpoint_dirs[n].mkdir(parents=True, exist_ok=True)
    for target, content, mode in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, rw.data(content))
            os.fchmod(fd, mode)  # the umask may have cut bits from `mode`
        finally:
            os.close(fd)
    env = {k: rw.text(v) for k, v in req.env.items()}
    return Prepared([rw.text(a) for a in req.argv], env, mounts, checkpoint_dirs)


def _inside(d: Path, path: str, what: str) -> Path:
    rel = os.path.normpath(path)
    if rel == ".." or rel.startswith("../") or rel.split("/")[0] in _RECORDS:
        raise PrepareError(f"{what} {path!r} must stay inside the task's directory")
    return d / rel


def _place(
    path: str,
    host: Path,
    d: Path,
    in_container: bool,
    mounts: list[tuple[str, str, bool]],
    rebased: dict[str, str],
) -> None:
    """An absolute folder the task expects at `path`: mounted there in a container, else its
    mentions in argv, env and files are rewritten to `host`."""
    if not os.path.isabs(path):
        raise PrepareError(f"{path!r} must be an absolute path")
    if in_container:
        mounts.append((str(host), path, False))
    else:
        rebased[path] = str(host)


def _link_input(
    d: Path,
    index: int,
    path: str | None,
    remote: str | None,
    regex: str | None,
    private: Path | None = None,
) -> str | None:
    """Make inputs/<index>; returns a source that a container must see at the same path (the
    targets of a regex input's links).
    A url or dataset input (`remote`) gets an empty folder, filled by the agent's staging."""
    if remote is not None:
        (d / INPUTS / str(index)).mkdir(parents=True)
        return None
    if path is None:
        raise PrepareError(f"input {index} has neither a path nor a url")
    link = d / INPUTS / str(index)
    link.parent.mkdir(exist_ok=True)
    place = os.symlink
    if private is not None and Path(path).resolve().is_relative_to(private):
        # copy2 returns its destination, symlink None; both are (src, dst)
        place = shutil.copy2  # type: ignore[assignment]
        if regex is None:
            shutil.copytree(path, link, symlinks=True)
            return None
    if regex is None:
        os.symlink(path, link)
        return None
    try:
        pattern = re.compile(regex)
    except re.error as e:
        raise PrepareError(f"input {index}: invalid regex {regex!r}: {e}") from None
    # re.search on the path relative to the input directory ("sub/a.txt"), so both
    # OSMO's `.*\.txt$` and a plain `\.txt$` select text files at any depth.
    link.mkdir()
    for dirpath, _dirs, names in os.walk(path):
        rel_dir = os.path.relpath(dirpath, path)
        for name in names:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if pattern.search(rel):
                (link / rel).parent.mkdir(parents=True, exist_ok=True)
                place(os.path.join(dirpath, name), link / rel)
    return path if place is os.symlink else None
