"""An attempt's directory on the agent's host: its layout, placeholders, files and inputs.

    ROOT/runs/<workflow_id>/<task>/<retry_id>/
        attempt.json   the request and its LaunchInfo, written before the process starts
        pid            the process id, which is also its process-group id
        exit.json      {exit_code, signal, ts, state, message, log_lines}, written atomically
        log            the durable log (logfile.py)
        output/        {{output}}
        inputs/<N>     {{input:N}}: a symlink to an upstream output directory, or with a regex
                       a directory of symlinks to the matching files only
        files/         spec files with absolute paths, rebased here when there is no container

`inputs/` and `files/` exist only when the request has inputs or absolute files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.base import LaunchInfo, LaunchRequest
from .protocol import check_key

ATTEMPT, EXIT, LOG, OUTPUT, INPUTS, FILES = (
    "attempt.json",
    "exit.json",
    "log",
    "output",
    "inputs",
    "files",
)
_RECORDS = {ATTEMPT, EXIT, EXIT + ".tmp", LOG}

# {{output}} and {{input:N}}, spaces tolerated inside the braces.
_TOKEN = r"\{\{\s*(?:(output)|input:\s*(\d+))\s*\}\}"
# A rebased path only where it is a whole path: not inside /data/tmp/run.sh or /tmp/run.sh.bak.
_PATH_BEFORE, _PATH_AFTER = r"(?<![\w./-])", r"(?![\w.-])"


class PrepareError(Exception):
    """The attempt cannot start; the message becomes its start_failed message."""


def attempt_dir(root: Path, key: str) -> Path:
    return root / "runs" / check_key(key)


def launch_info(root: Path, key: str, already_known: bool = False) -> LaunchInfo:
    d = attempt_dir(root, key)
    return LaunchInfo(key, str(d), str(d / OUTPUT), str(d / LOG), already_known)


@dataclass
class Prepared:
    argv: list[str]
    env: dict[str, str]  # the request's env, resolved; the supervisor adds its own on top
    mounts: list[tuple[str, str]] = field(default_factory=list)  # (host, container) paths


class _Rewriter:
    """Resolves placeholders and rebases declared absolute file paths, in one regex pass."""

    def __init__(self, d: Path, rebased: dict[str, str]):
        self._output = str(d / OUTPUT)
        self._inputs = str(d / INPUTS)
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


def prepare(d: Path, req: LaunchRequest, in_container: bool) -> Prepared:
    """Create output/, inputs/ and the files of `req` under `d`; resolve argv and env."""
    os.mkdir(d / OUTPUT)
    mounts = [_link_input(d, i.index, i.path, i.url, i.regex) for i in req.inputs]
    targets: list[tuple[Path, bytes, int]] = []
    rebased: dict[str, str] = {}
    for f in req.files:
        if os.path.isabs(f.path):
            target = d / FILES / os.path.normpath(f.path).lstrip("/")
            if in_container:
                mounts.append((str(target), f.path))
            else:
                rebased[f.path] = str(target)
        else:
            rel = os.path.normpath(f.path)
            if rel == ".." or rel.startswith("../") or rel.split("/")[0] in _RECORDS:
                raise PrepareError(f"file {f.path!r} must stay inside the task's directory")
            target = d / rel
        targets.append((target, f.content, f.mode))
    rw = _Rewriter(d, rebased)
    for target, content, mode in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, rw.data(content))
            os.fchmod(fd, mode)  # the umask may have cut bits from `mode`
        finally:
            os.close(fd)
    env = {k: rw.text(v) for k, v in req.env.items()}
    return Prepared([rw.text(a) for a in req.argv], env, mounts)


def _link_input(
    d: Path, index: int, path: str | None, url: str | None, regex: str | None
) -> tuple[str, str]:
    """Make inputs/<index>; returns the source as a mount (containers see the same path)."""
    if url is not None:
        raise PrepareError(f"url inputs need the data layer (not implemented yet): {url}")
    if path is None:
        raise PrepareError(f"input {index} has neither a path nor a url")
    link = d / INPUTS / str(index)
    link.parent.mkdir(exist_ok=True)
    if regex is None:
        os.symlink(path, link)
        return (path, path)
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
                os.symlink(os.path.join(dirpath, name), link / rel)
    return (path, path)
