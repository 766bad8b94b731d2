"""`osmo workflow rsync` into and out of a running task (CLI → server's files routes → SFTP on
the task's agent), with rsync's quick check; and paths that try to leave the workdir."""

from __future__ import annotations

import os
from pathlib import Path

from tornado.httpclient import HTTPClientError

from tests.interactive.jupyter.conftest import start_task
from tests.interactive.jupyter.test_interactive_cli import osmo


def tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under root: (content, mtime in seconds, permission bits)."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), int(p.stat().st_mtime), p.stat().st_mode & 0o777)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


async def test_upload_then_download_a_tree_with_the_quick_check(api, service, cli_env, tmp_path):
    env, alice = cli_env
    wf = await start_task(api, service, alice)
    workdir = Path(service.task(wf, "main")["workdir"])
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(3 << 19))  # two SFTP chunks
    (src / "sub" / "deeper" / "run.sh").write_text("#!/bin/sh\n")
    (src / "sub" / "deeper" / "run.sh").chmod(0o750)
    (src / "link").symlink_to(src / "a.txt")

    async def rsync(*args: str) -> str:
        code, out, err = await osmo(env, "workflow", "rsync", *args)
        assert code == 0, (out, err)
        return (out + err).decode()

    said = await rsync("upload", wf, "main", f"{src}:data")
    assert "uploaded 3 files" in said and "1 links skipped" in said
    assert tree(workdir / "data") == tree(src)
    assert (workdir / "data" / "empty").is_dir()

    (src / "a.txt").write_text("alpha, changed\n")  # the others are unchanged: skipped
    said = await rsync("upload", wf, "main", f"{src}:data")
    assert "uploaded 1 files (15 bytes), 2 unchanged" in said
    assert tree(workdir / "data") == tree(src)

    back = tmp_path / "back"
    assert "downloaded 3 files" in await rsync("download", wf, "main", f"{back}:data")
    assert tree(back) == tree(src)
    assert "downloaded 0 files (0 bytes), 3 unchanged" in await rsync(
        "download", wf, "main", f"{back}:data"
    )
    await rsync("download", wf, "main", f"{tmp_path}:marker")  # one file, into a folder
    assert (tmp_path / "marker").read_text() == "ready\n"

    access = [
        e["payload"]
        for e in service.store.events_since(0, wf)
        if e["type"] == "task.access" and e["payload"]["action"] == "files"
    ]
    assert {(p["user"], p["op"]) for p in access} == {
        ("alice", "list"),
        ("alice", "write"),
        ("alice", "read"),
    }


async def test_paths_cannot_leave_the_workdir(api, service, pat, jp_fetch, cli_env, tmp_path):
    env, alice = cli_env
    bob = await pat("bob")
    wf = await start_task(api, service, alice)
    workdir = Path(service.task(wf, "main")["workdir"])
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (workdir / "out").symlink_to(tmp_path)  # a folder outside
    (workdir / "s.txt").symlink_to(secret)  # a file outside
    base = ("osmo", "api", "v1", "workflows", wf, "tasks", "main", "files")

    async def status(*path: str, method: str = "GET", who: dict[str, str] = alice, **q: str) -> int:
        body = b"x" if method == "PUT" else None
        try:
            resp = await jp_fetch(*base, *path, method=method, body=body, params=q, headers=who)
        except HTTPClientError as e:
            return e.code
        return resp.code

    assert await status("content", path="s.txt") == 403
    assert await status("content", path="out/secret.txt") == 403
    assert await status(path="out/") == 200  # listed as a link, not followed
    assert await status(path="out/.") == 200
    assert await status("content", method="PUT", path="out/evil") == 403
    assert await status("content", method="PUT", path="../../evil") == 422
    assert await status(path="../..") == 422
    assert await status(path="/../../etc") == 422
    assert await status("content", path="marker", who=bob) == 403
    assert await status("content", path="marker") == 200
    assert not list(tmp_path.glob("*evil*")) and not list(tmp_path.parent.glob("*evil*"))

    code, _, err = await osmo(env, "workflow", "rsync", "download", wf, "main", "x:../../etc")
    assert code != 0 and b"outside the task's workdir" in err
    assert not (Path.cwd() / "x").exists()
