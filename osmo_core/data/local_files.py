"""The local side of an upload: which files a list of paths names, under which dataset paths,
and their sha256."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping

from ..errors import InputError, Problem
from .refs import validate_path

_CHUNK = 4 * 2**20


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def collect(paths: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """dataset path → local file. A directory gives its contents (relative to it), a file its
    base name; a mapping is taken as {dataset path: local file}."""
    out: dict[str, str] = {}
    problems: list[Problem] = []

    def add(rel: str, local: str) -> None:
        try:
            validate_path(rel)
        except InputError as e:
            problems.extend(e.problems)
            return
        if rel in out:
            problems.append(Problem(f"two files map to {rel!r}", field="path"))
            return
        try:
            st = os.stat(local)
        except OSError as e:
            problems.append(Problem(f"cannot read {local}: {e.strerror}", field="path"))
            return
        if not stat.S_ISREG(st.st_mode):
            problems.append(Problem(f"{local} is not a regular file", field="path"))
            return
        out[rel] = local

    if isinstance(paths, Mapping):
        for rel, local in paths.items():
            add(rel, local)
    else:
        for p in paths:
            if os.path.isdir(p):
                seen: set[str] = set()
                for root, dirs, files in os.walk(p, followlinks=True):
                    real = os.path.realpath(root)
                    if real in seen:  # a symlink loop
                        dirs[:] = []
                        continue
                    seen.add(real)
                    dirs.sort()
                    for f in sorted(files):
                        local = os.path.join(root, f)
                        add(os.path.relpath(local, p).replace(os.sep, "/"), local)
            elif os.path.lexists(p):
                add(os.path.basename(os.path.normpath(p)), p)
            else:
                problems.append(Problem(f"no such file or directory: {p}", field="path"))
    if problems:
        raise InputError(problems)
    if not out:
        raise InputError(Problem("no files to upload", field="path"))
    return out
