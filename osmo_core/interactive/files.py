"""Files in a running task's workdir, over the agent's SFTP subsystem (hub.Interactive.sftp).

Paths are relative to the workdir; a path that climbs out of it (`..`) is refused here, and the
agent refuses one whose symlinks lead out. What `osmo workflow rsync` needs:

    listing(sftp, path)              the path and everything under it: type, size, mtime, mode
                                     (symlinks listed, not followed)
    read(sftp, path)                 the file's bytes, in chunks
    Upload(sftp, path, mtime, mode)  write chunks to `.name.osmo-partial`, then rename over the
                                     file, so a broken upload never leaves half a file
    makedirs(sftp, paths)
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import AsyncIterator
from typing import Any

import asyncssh

from ..errors import Conflict, Forbidden, InputError, NotFound, Problem

MAX_ENTRIES = 200_000  # a listing bigger than this is refused: pick a folder inside
CHUNK = 1 << 20


def clean(path: str, field: str = "path") -> str:
    """A workdir-relative POSIX path ("." for the workdir); `..` out of it is refused."""
    norm = posixpath.normpath(path.lstrip("/") or ".")
    if norm == ".." or norm.startswith("../") or "\0" in norm:
        raise InputError(Problem(f"{path!r} leads outside the task's workdir", field=field))
    return norm


def _errors(e: asyncssh.SFTPError, path: str) -> Exception:
    if isinstance(e, asyncssh.SFTPNoSuchFile):
        return NotFound(f"no {path!r} in the task's workdir")
    if isinstance(e, asyncssh.SFTPPermissionDenied):
        return Forbidden(f"{path!r}: {e.reason}")
    return Conflict(f"{path!r}: {e.reason}")


def _entry(rel: str, attrs: asyncssh.SFTPAttrs) -> dict[str, Any]:
    mode = attrs.permissions or 0
    kind = (
        "dir"
        if stat.S_ISDIR(mode)
        else "file"
        if stat.S_ISREG(mode)
        else "link"
        if stat.S_ISLNK(mode)
        else "other"
    )
    return {
        "path": rel,
        "type": kind,
        "size": attrs.size or 0,
        "mtime": int(attrs.mtime or 0),
        "mode": stat.S_IMODE(mode),
    }


async def listing(sftp: asyncssh.SFTPClient, path: str) -> dict[str, Any]:
    path = clean(path)
    try:
        top = _entry("", await sftp.lstat(path))
        entries = [top]
        todo = [""] if top["type"] == "dir" else []
        while todo:
            rel = todo.pop()
            for name in await sftp.readdir(posixpath.join(path, rel) if rel else path):
                if name.filename in (".", ".."):
                    continue
                e = _entry(posixpath.join(rel, str(name.filename)), name.attrs)
                entries.append(e)
                if e["type"] == "dir":
                    todo.append(e["path"])
                if len(entries) > MAX_ENTRIES:
                    raise Conflict(
                        f"more than {MAX_ENTRIES} entries under {path!r}; pick a folder inside"
                    )
    except asyncssh.SFTPError as e:
        raise _errors(e, path) from e
    entries.sort(key=lambda e: e["path"])
    return {"path": path, "type": top["type"], "entries": entries}


async def read(sftp: asyncssh.SFTPClient, path: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
    """The file's entry (size, mtime, mode) and an iterator of its bytes."""
    path = clean(path)
    try:
        info = _entry(path, await sftp.stat(path))
        if info["type"] != "file":
            raise Conflict(f"{path!r} is a {info['type']}, not a file")
        f = await sftp.open(path, "rb")
    except asyncssh.SFTPError as e:
        raise _errors(e, path) from e

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while data := await f.read(CHUNK):
                yield data  # type: ignore[misc]  # asyncssh types read() as AnyStr; "rb" gives bytes
        finally:
            await f.close()

    return info, chunks()


class Upload:
    """`await Upload.open(...)`, then `write(chunk)`s, then `done()` (or `abort()`)."""

    def __init__(self, sftp: asyncssh.SFTPClient, path: str, mtime: int | None, mode: int | None):
        self.sftp = sftp
        self.path = clean(path)
        head, name = posixpath.split(self.path)
        self.partial = posixpath.join(head, f".{name}.osmo-partial")
        self.mtime, self.mode = mtime, mode
        self.size = 0
        self._f: Any = None

    async def open(self) -> Upload:
        if self.path == ".":
            raise Conflict("the workdir itself is a folder, not a file")
        try:
            try:
                self._f = await self.sftp.open(self.partial, "wb")
            except asyncssh.SFTPNoSuchFile:  # its folder is new: make it, with parents
                await self.sftp.makedirs(posixpath.dirname(self.path), exist_ok=True)
                self._f = await self.sftp.open(self.partial, "wb")
        except asyncssh.SFTPError as e:
            raise _errors(e, self.path) from e
        return self

    async def write(self, data: bytes) -> None:
        await self._f.write(data)
        self.size += len(data)

    async def done(self) -> None:
        try:
            await self._f.close()
            self._f = None
            attrs = asyncssh.SFTPAttrs(
                permissions=None if self.mode is None else self.mode & 0o1777,  # no setuid/gid
                atime=self.mtime,
                mtime=self.mtime,
            )
            await self.sftp.setstat(self.partial, attrs)
            await self.sftp.posix_rename(self.partial, self.path)
        except asyncssh.SFTPError as e:
            await self.abort()
            raise _errors(e, self.path) from e

    async def abort(self) -> None:
        try:
            if self._f is not None:
                await self._f.close()
            await self.sftp.remove(self.partial)
        except (asyncssh.Error, OSError):
            pass


async def makedirs(sftp: asyncssh.SFTPClient, paths: list[str]) -> None:
    for i, p in enumerate(paths):
        path = clean(p, f"paths[{i}]")
        try:
            await sftp.makedirs(path, exist_ok=True)
        except asyncssh.SFTPError as e:
            raise _errors(e, path) from e
