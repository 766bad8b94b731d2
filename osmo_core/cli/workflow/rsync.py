"""`osmo workflow rsync upload|download WF TASK LOCAL:REMOTE`: copy files and folders between
this machine and a running task's workdir, through the server's files routes (the server speaks
SFTP to the task's agent; osmo_jupyter/server/files.py).

REMOTE is relative to the task's workdir; either half may be left out for the same name
(`output` is `output:output`). A folder is copied with everything under it, into the folder of
the same place on the other side (like `rsync -r SRC/ DEST/`); a file to DEST, or into DEST when
that is a folder. rsync's quick check: a file whose size and mtime (seconds) already match on
the other side is skipped, and copies get the source's mtime and permission bits. Nothing is
deleted on the other side; symlinks are not copied (counted as skipped).
"""

from __future__ import annotations

import argparse
import os
import posixpath
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common import EXIT_INVALID, EXIT_OK, Output
from ..connect import with_client

if TYPE_CHECKING:
    from ...client import Client

CHUNK = 1 << 20


def register(cmds: Any) -> None:
    """Add `rsync` to the `workflow` group's subcommands."""
    rs = cmds.add_parser(
        "rsync", help="copy files between here and a running task's workdir (quick check)"
    )
    rs.add_argument("direction", choices=["upload", "download"])
    rs.add_argument("id")
    rs.add_argument("task")
    rs.add_argument("paths", metavar="LOCAL:REMOTE", help="REMOTE is relative to the workdir")
    rs.set_defaults(run=with_client(rsync_command))


def _split(spec: str) -> tuple[str, str]:
    local, _, remote = spec.partition(":")
    local, remote = local or remote, remote or local
    if not local:
        raise ValueError(f"{spec!r}: want LOCAL:REMOTE, LOCAL or :REMOTE")
    return local, remote


async def rsync_command(client: Client, args: argparse.Namespace, out: Output) -> int:
    try:
        local, remote = _split(args.paths)
    except ValueError as e:
        out.error(str(e))
        return EXIT_INVALID
    sync = _Sync(client, f"workflows/{args.id}/tasks/{args.task}/files")
    if args.direction == "upload":
        sync.upload(Path(local), remote)
        verb = "uploaded"
    else:
        sync.download(remote, Path(local))
        verb = "downloaded"
    out.info(
        f"{verb} {sync.copied} files ({sync.bytes} bytes), {sync.unchanged} unchanged"
        + (f", {sync.links} links skipped" if sync.links else "")
    )
    return EXIT_OK


class _Sync:
    def __init__(self, client: Client, base: str):
        self.client, self.base = client, base
        self.copied = self.bytes = self.unchanged = self.links = 0

    def _listing(self, remote: str) -> dict[str, Any] | None:
        from ...client import ApiError

        try:
            # the server's answer is JSON (Any)
            return self.client.request("GET", self.base, params={"path": remote})  # type: ignore[no-any-return]
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    # --- upload --------------------------------------------------------------------------------

    def upload(self, local: Path, remote: str) -> None:
        from ...client import ApiError

        if not local.exists():
            raise ApiError(404, f"no {str(local)!r} here")  # reported like the server's 404
        there = self._listing(remote)
        if local.is_file():
            if there is not None and there["type"] == "dir":
                remote = posixpath.join(remote, local.name)
                there = self._listing(remote)
            have = {"": there["entries"][0]} if there and there["type"] == "file" else {}
            self._put(local, remote, have.get(""))
            return
        have = {e["path"]: e for e in there["entries"]} if there else {}
        dirs, todo = [], []
        for folder, subdirs, names in os.walk(local):
            rel = os.path.relpath(folder, local)
            rel = "" if rel == "." else rel
            for d in list(subdirs):
                if os.path.islink(os.path.join(folder, d)):
                    self.links += 1
                    subdirs.remove(d)
            if have.get(rel, {}).get("type") != "dir":
                dirs.append(posixpath.join(remote, rel) if rel else remote)
            for name in names:
                path = Path(folder, name)
                if path.is_symlink() or not path.is_file():
                    self.links += 1
                    continue
                r = posixpath.join(rel, name) if rel else name
                todo.append((path, posixpath.join(remote, r), have.get(r)))
        if dirs:
            self.client.post(f"{self.base}/dirs", {"paths": dirs})
        for path, target, entry in todo:
            self._put(path, target, entry)

    def _put(self, path: Path, remote: str, entry: dict[str, Any] | None) -> None:
        st = path.stat()
        if _same(entry, st.st_size, st.st_mtime):
            self.unchanged += 1
            return
        params = {"path": remote, "mtime": int(st.st_mtime), "mode": st.st_mode & 0o1777}
        headers = {"Content-Length": str(st.st_size), "Content-Type": "application/octet-stream"}
        with path.open("rb") as f:
            resp = self.client.open(
                "PUT", f"{self.base}/content", params=params, data=f, headers=headers
            )
            resp.close()
        self.copied += 1
        self.bytes += st.st_size

    # --- download ------------------------------------------------------------------------------

    def download(self, remote: str, local: Path) -> None:
        from ...client import ApiError

        there = self._listing(remote)
        if there is None:
            raise ApiError(404, f"no {remote!r} in the task's workdir")
        if there["type"] == "file":
            target = local / posixpath.basename(there["path"]) if local.is_dir() else local
            self._get(there["path"], target, there["entries"][0])
            return
        for e in there["entries"]:
            target = local / e["path"] if e["path"] else local
            if e["type"] == "dir":
                target.mkdir(parents=True, exist_ok=True)
            elif e["type"] == "file":
                self._get(posixpath.join(there["path"], e["path"]), target, e)
            else:
                self.links += 1

    def _get(self, remote: str, target: Path, entry: dict[str, Any]) -> None:
        try:
            st = target.stat()
            if _same(entry, st.st_size, st.st_mtime):
                self.unchanged += 1
                return
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                resp = self.client.open("GET", f"{self.base}/content", params={"path": remote})
                with resp:
                    while data := resp.read(CHUNK):
                        f.write(data)
                        self.bytes += len(data)
            os.chmod(tmp, entry["mode"] & 0o1777)  # a task's setuid file is not ours to make
            os.utime(tmp, (entry["mtime"], entry["mtime"]))
            os.replace(tmp, target)  # never half a file under the real name
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.copied += 1


def _same(entry: dict[str, Any] | None, size: int, mtime: float) -> bool:
    """rsync's quick check: same size and same modification time (whole seconds)."""
    if not entry:
        return False
    return entry["type"] == "file" and (entry["size"], entry["mtime"]) == (
        size,
        int(mtime),
    )
