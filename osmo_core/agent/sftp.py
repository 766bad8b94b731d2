"""SFTP inside one running attempt's folder, for the control plane's file sync.

Chroot-like: asyncssh maps "/" to the attempt's workdir and stops `..` there; on top, a path
whose symlinks lead outside it is refused, links are not created and setuid/setgid bits are not
set. With task isolation every file call is made as the task's uid, so a race on a symlink or a
path the checks miss reaches nothing the task itself could not.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

import asyncssh

from .identity import TaskIdentity, acting_as, drop_setid


class TaskSFTP(asyncssh.SFTPServer):
    """SFTP in one attempt's folder. asyncssh's chroot maps "/" to it and stops `..` there;
    on top, every folder on a path must really (symlinks resolved) lie inside it, and so must
    the file itself for the calls that follow a last symlink. Links are not created, and no
    setuid/setgid bit is set. With isolation every file system call is made as the task's
    identity (`acting_as`), so neither a race on a symlink nor a path the checks miss reaches
    what the task itself could not; without it the task runs as the agent anyway."""

    def __init__(self, chan: Any, root: Path, identity: TaskIdentity | None = None):
        super().__init__(chan, chroot=os.fsencode(root))
        self._root = os.fsencode(os.path.realpath(root))
        self._identity = identity

    def _inside(self, local: bytes) -> bytes:
        real = os.path.realpath(local)
        if real != self._root and not real.startswith(self._root + b"/"):
            raise asyncssh.SFTPPermissionDenied("the path leads outside the task's workdir")
        return local

    def map_path(self, path: bytes) -> bytes:
        local = super().map_path(path)
        if local.rstrip(b"/") != self._root:
            self._inside(posixpath.dirname(local.rstrip(b"/")))
        return local

    def _follow(self, path: bytes) -> None:
        self._inside(self.map_path(path))

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            with acting_as(self._identity):
                return fn(*args)
        except PermissionError as e:
            raise asyncssh.SFTPPermissionDenied(str(e)) from None

    def open(self, path: bytes, pflags: int, attrs: Any) -> Any:
        self._follow(path)
        return self._call(super().open, path, pflags, _no_setid(attrs))

    def open56(self, path: bytes, access: int, flags: int, attrs: Any) -> Any:
        self._follow(path)
        return self._call(super().open56, path, access, flags, _no_setid(attrs))

    def stat(self, path: bytes) -> Any:
        self._follow(path)
        return self._call(super().stat, path)

    def lstat(self, path: bytes) -> Any:
        return self._call(super().lstat, path)

    def setstat(self, path: bytes, attrs: Any) -> Any:
        self._follow(path)
        return self._call(super().setstat, path, _no_setid(attrs))

    def lsetstat(self, path: bytes, attrs: Any) -> Any:
        return self._call(super().lsetstat, path, _no_setid(attrs))

    def fsetstat(self, file_obj: Any, attrs: Any) -> Any:
        return self._call(super().fsetstat, file_obj, _no_setid(attrs))

    def statvfs(self, path: bytes) -> Any:
        self._follow(path)
        return self._call(super().statvfs, path)

    def realpath(self, path: bytes) -> Any:
        self._follow(path)
        return self._call(super().realpath, path)

    def readlink(self, path: bytes) -> Any:
        return self._call(super().readlink, path)

    def mkdir(self, path: bytes, attrs: Any) -> Any:
        return self._call(super().mkdir, path, _no_setid(attrs))

    def rmdir(self, path: bytes) -> Any:
        return self._call(super().rmdir, path)

    def remove(self, path: bytes) -> Any:
        return self._call(super().remove, path)

    def rename(self, oldpath: bytes, newpath: bytes) -> Any:
        return self._call(super().rename, oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> Any:
        return self._call(super().posix_rename, oldpath, newpath)

    async def scandir(self, path: bytes) -> Any:
        self._follow(path)
        local = self.map_path(path)

        def listing() -> list[Any]:  # whole, as the task: nothing else runs as it meanwhile
            names = [(n, os.lstat(os.path.join(local, n))) for n in (b".", b"..")]
            with os.scandir(local) as entries:
                names += [(e.name, e.stat(follow_symlinks=False)) for e in entries]
            return names

        for name, st in self._call(listing):
            yield asyncssh.SFTPName(name, attrs=asyncssh.SFTPAttrs.from_local(st))

    def symlink(self, oldpath: bytes, newpath: bytes) -> Any:
        raise asyncssh.SFTPPermissionDenied("links are not made in a task's workdir")

    link = symlink


def _no_setid(attrs: Any) -> Any:
    if attrs is not None and attrs.permissions is not None:
        attrs.permissions = drop_setid(attrs.permissions)
    return attrs
