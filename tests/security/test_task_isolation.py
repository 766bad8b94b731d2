"""Tasks cannot read the control plane's state or other users' data (issue 14, point 3, and the
setuid/permission items of point 7).

A real headless server (`jupyter osmo`'s identity provider) running as root, as a team would
run it in a container, with `task_isolation = "user"`: each OSMO user's tasks run as a uid of
their own. The tasks play the attacker with plain shell commands and report what they reached;
every try is kept here. The data folder lives under /tmp (searchable by all) so that only its
own mode stands between a task and the store, not a closed pytest folder above it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tornado.httpclient import HTTPClientError

from osmo_core.agent.identity import UIDS, TaskIdentity, UidMap, opener
from osmo_core.agent.workdir import prepare
from osmo_core.config import OsmoConfig
from osmo_core.data.datasets import DatasetStore
from osmo_core.data.transfer import TransferError, upload_dir
from osmo_core.errors import ConfigError
from osmo_core.service import Service
from osmo_core.wire import InputSpec, LaunchRequest
from tests.interactive.conftest import until
from tests.interactive.jupyter.conftest import start_task
from tests.interactive.jupyter.test_interactive_cli import osmo

SECRET = "hunter2-credential-value"
UID_LO = 2_000_000


@pytest.fixture
def osmo_data_dir() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="osmo-data-", dir="/tmp"))
    top.chmod(0o755)  # others may search it: the data folder's own mode must keep them out
    yield top / "osmo"
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    jp_server_config["OsmoConfig"].update(
        task_isolation="user",
        task_uid_range=f"{UID_LO}-{UID_LO + 99}",
        credentials={"vault": {"token": SECRET}},
    )
    return jp_server_config


def spec(name: str, *tasks: dict[str, Any]) -> str:
    return yaml.safe_dump({"workflow": {"name": name, "tasks": list(tasks)}})


def task(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": ["sh", "-c", script], **extra}


async def run(api: Any, service: Service, headers: dict[str, str], text: str) -> str:
    wf = await api("POST", "workflows", body={"spec": text}, headers=headers, status=201)
    await asyncio.wait_for(service.wait(wf["id"]), 60)
    return str(wf["id"])


async def log_text(service: Service, wf: str, name: str) -> str:
    """What the task printed (not the agent's system lines)."""
    return "\n".join(ln.text for ln in await service.logs(wf, name) if ln.stream != "system")


# A shell probe: for each path, READ or DENIED (cat for files, ls for folders).
PROBE = """
id -u; id -G
for p in {paths}; do
  if [ -d "$p" ]; then ls "$p" >/dev/null 2>&1 && echo "READ $p" || echo "DENIED $p"
  else cat "$p" >/dev/null 2>&1 && echo "READ $p" || echo "DENIED $p"; fi
done
"""


async def test_a_task_reads_nothing_of_the_control_plane_or_of_another_user(
    api, service, pat, osmo_data_dir
):
    alice, bob = await pat("alice"), await pat("bob")
    bobs = await run(
        api,
        service,
        bob,
        spec("bobs", task("main", "echo bob-private > {{output}}/secret.txt; echo bob-log-line")),
    )
    assert service.get(bobs)["status"] == "COMPLETED"
    bob_row = service.task(bobs, "main")
    data = osmo_data_dir
    targets = [
        data / "osmo.db",  # the store: workflows, events, the hashes of every token
        data / "osmo.db-wal",
        data / "credentials.json",  # the configured credentials, in clear
        data / "ssh_host_key",  # the agent's dial-home host key
        data / "interactive" / "client_key",  # the control plane's SSH client key
        data / UIDS,
        data / "agent.log",
        data,  # listing the data folder
        Path(bob_row["workdir"]),  # bob's task folder
        Path(bob_row["workdir"]) / "output" / "secret.txt",
        Path(bob_row["log_path"]),  # bob's log (the agent's record)
        Path(f"/proc/{os.getpid()}/environ"),  # the server's environment
    ]
    for t in targets[:4]:
        assert t.exists(), t  # each is really there to be stolen
    script = PROBE.format(paths=" ".join(f"'{t}'" for t in targets))
    probe = task("main", script, credentials={"vault": {"VAULT": "token"}})
    wf = await run(api, service, alice, spec("probe", probe))
    assert service.get(wf)["status"] == "COMPLETED"
    lines = (await log_text(service, wf, "main")).splitlines()
    uid = int(lines[0])
    assert uid != os.geteuid() and UID_LO <= uid < UID_LO + 100
    assert lines[1] == str(uid)  # its own group only: not root's
    assert [ln for ln in lines if ln.startswith("READ")] == []
    assert len([ln for ln in lines if ln.startswith("DENIED")]) == len(targets)

    # Bob's tasks run as another uid; alice's next task keeps hers.
    again = await run(api, service, alice, spec("again", task("main", "id -u")))
    assert (await log_text(service, again, "main")).strip() == str(uid)
    bob_uid = os.stat(bob_row["workdir"]).st_uid
    assert bob_uid not in (0, uid) and UID_LO <= bob_uid < UID_LO + 100
    assert json.loads((data / UIDS).read_text()) == {"alice": uid, "bob": bob_uid}


async def test_tasks_of_one_user_pass_data_and_get_their_credential(api, service, pat):
    alice = await pat("alice")
    wf = await run(
        api,
        service,
        alice,
        spec(
            "pipeline",
            task("make", "echo made-by-make > {{output}}/data.txt; chmod 600 {{output}}/data.txt"),
            task(
                "use",
                'cat {{input:0}}/data.txt; [ "$VAULT" = ' + SECRET + " ] && echo has-credential",
                inputs=[{"task": "make"}],
                credentials={"vault": {"VAULT": "token"}},
            ),
        ),
    )
    assert service.get(wf)["status"] == "COMPLETED", await log_text(service, wf, "use")
    printed = (await log_text(service, wf, "use")).split("\n")
    assert printed[:2] == ["made-by-make", "has-credential"]
    workdir = Path(service.task(wf, "use")["workdir"])
    st = workdir.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid != 0
    assert stat.S_IMODE(workdir.parent.stat().st_mode) == 0o711  # searchable, not listable


async def test_exec_and_terminals_run_as_the_task(api, service, pat, jp_ws_fetch, osmo_data_dir):
    alice = await pat("alice")
    wf = await start_task(api, service, alice)
    uid = os.stat(service.task(wf, "main")["workdir"]).st_uid
    assert uid != 0
    db = osmo_data_dir / "osmo.db"
    sess = await service.interactive.exec(
        wf, "main", ["sh", "-c", f"id -u; cat marker; cat {db} >/dev/null || echo denied"]
    )
    out = b""
    while chunk := await asyncio.wait_for(sess.read(), 10):
        out += chunk
    assert out.decode().split() == [str(uid), "ready", "denied"]

    params = [("cmd", "sh"), ("pty", "1"), ("cols", "80"), ("rows", "20")]
    path = ("osmo", "api", "v1", "workflows", wf, "tasks", "main", "exec")
    ws = await jp_ws_fetch(*path, params=params, headers=alice)
    await ws.write_message(b"\x00echo uid=$(id -u) tty=$(stat -c %u $(tty))\n", binary=True)
    seen = b""
    want = f"uid={uid} tty={uid}".encode()
    while want not in seen:
        msg = await asyncio.wait_for(ws.read_message(), 10)
        assert isinstance(msg, bytes), msg
        seen += msg[1:]
    ws.close()
    await api("POST", f"workflows/{wf}/cancel", headers=alice)


async def test_files_api_acts_as_the_task(api, service, pat, jp_fetch, osmo_data_dir):
    alice = await pat("alice")
    wf = await start_task(api, service, alice, cmd=f"ln -s {osmo_data_dir}/osmo.db db; sleep 120")
    workdir = Path(service.task(wf, "main")["workdir"])
    await until(lambda: (workdir / "db").is_symlink(), what="the link")
    base = ("osmo", "api", "v1", "workflows", wf, "tasks", "main", "files", "content")
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*base, params={"path": "db"}, headers=alice)
    assert e.value.code == 403
    # An upload asking for setuid lands without it, owned by the task's uid.
    await jp_fetch(
        *base, method="PUT", body=b"#!/bin/sh\n", params={"path": "tool", "mode": str(0o2541)},
        headers=alice,
    )  # fmt: skip
    st = (workdir / "tool").stat()
    assert stat.S_IMODE(st.st_mode) == 0o541 and st.st_uid == workdir.stat().st_uid != 0
    await api("POST", f"workflows/{wf}/cancel", headers=alice)


async def test_setuid_bits_are_dropped_on_downloads(api, service, pat, tmp_path):
    alice = await pat("alice")
    src = tmp_path / "src"
    src.mkdir()
    (src / "suid").write_text("#!/bin/sh\n")
    (src / "suid").chmod(0o4755)
    store = service.config.dataset_store
    DatasetStore(store).upload("tools", {"suid": str(src / "suid")})
    wf = await run(
        api,
        service,
        alice,
        spec(
            "setuid",
            task(
                "main",
                "stat -c '%a %u' {{input:0}}/suid {{input:1}}/suid",
                inputs=[{"url": f"file://{src}"}, {"dataset": {"name": "tools"}}],
            ),
        ),
    )
    assert service.get(wf)["status"] == "COMPLETED", await log_text(service, wf, "main")
    uid = os.stat(service.task(wf, "main")["workdir"]).st_uid
    modes = (await log_text(service, wf, "main")).splitlines()[:2]
    assert [int(m.split()[0], 8) & 0o6000 for m in modes] == [0, 0]
    assert modes[1].split()[0] == "755"  # the dataset's mode, less the setuid bit
    assert {m.split()[1] for m in modes} == {str(uid)}  # the downloads are the task's


async def test_an_output_link_to_the_store_is_not_uploaded(api, service, pat, osmo_data_dir):
    alice = await pat("alice")
    out = Path(tempfile.mkdtemp(prefix="osmo-out-", dir="/tmp"))
    try:
        script = (
            f"ln -s {osmo_data_dir}/osmo.db {{{{output}}}}/stolen.db; "
            f"ln -s /etc/shadow {{{{output}}}}/shadow; "
            "echo mine > {{output}}/ok.txt; ln -s ok.txt {{output}}/alias.txt"
        )
        wf = await run(
            api,
            service,
            alice,
            spec("exfil", task("main", script, outputs=[{"url": f"file://{out}"}])),
        )
        assert service.get(wf)["status"] == "COMPLETED", await log_text(service, wf, "main")
        assert sorted(p.name for p in out.rglob("*")) == ["alias.txt", "ok.txt"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


async def test_the_data_folder_is_the_control_planes_alone(api, service, pat, osmo_data_dir):
    alice = await pat("alice")
    await run(api, service, alice, spec("modes", task("main", "echo hi")))
    assert stat.S_IMODE(osmo_data_dir.stat().st_mode) == 0o700
    loose = []
    for dirpath, dirs, names in os.walk(osmo_data_dir):
        for name in dirs + names:
            st = os.lstat(os.path.join(dirpath, name))
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                loose.append((os.path.join(dirpath, name), oct(st.st_mode)))
    assert loose == []


def test_a_single_user_server_runs_tasks_as_itself(tmp_path):
    svc = Service(OsmoConfig(data_dir=str(tmp_path / "d")))  # lab, `osmo workflow run`: auto
    assert svc.isolation is None
    assert Service(OsmoConfig(data_dir=str(tmp_path / "d")), headless=True).isolation is not None


@pytest.mark.parametrize(
    ("runs", "problem"),
    [("{data}/runs", "lies in the data folder"), ("{closed}/tasks", "not searchable by others")],
)
def test_task_folders_that_tasks_could_not_use_are_refused(tmp_path, runs, problem):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    data = tmp_path / "d"
    config = OsmoConfig(
        data_dir=str(data),
        task_isolation="user",
        task_runs_dir=runs.format(data=data, closed=closed),
    )
    with pytest.raises(ConfigError) as e:
        Service(config)
    assert "OsmoConfig.task_runs_dir" in str(e.value) and problem in str(e.value)


def test_a_bad_uid_range_is_refused():
    with pytest.raises(ConfigError, match=r"OsmoConfig\.task_uid_range"):
        OsmoConfig(task_uid_range="0-10")


async def test_an_agent_left_by_a_single_user_server_is_not_trusted_by_a_team_one(
    osmo_data_dir, task_runs_dir
):
    """The agent outlives its server: one started without isolation (a lab on the same data
    folder) is replaced before a team server's task runs, not used as it is."""
    spec_ = spec("who", task("main", "id -u"))
    base = {"data_dir": str(osmo_data_dir), "task_runs_dir": str(task_runs_dir)}
    backends = {"local": {"kind": "local", "idle_timeout": 60}}
    uids = []
    for mode in ("none", "user"):
        config = OsmoConfig(**base, backends=backends, task_isolation=mode)
        async with Service(config) as svc:
            wf = await svc.submit(spec_, user="alice")
            await asyncio.wait_for(svc.wait(wf), 60)
            uids.append(int((await log_text(svc, wf, "main")).strip()))
            if mode == "user":
                await svc.backends["local"].shutdown_agent()
    assert uids[0] == os.geteuid() and uids[1] != uids[0]


def test_an_input_the_task_could_not_reach_is_copied_in(tmp_path):
    """An upstream output kept in the control plane's data folder (an SSH host's, mirrored
    there) is copied into an isolated task's inputs/N; one elsewhere stays a link."""
    private, w = tmp_path / "data", tmp_path / "task"
    (private / "mirror").mkdir(parents=True)
    (private / "mirror" / "a.txt").write_text("from a host")
    (tmp_path / "shared").mkdir()
    w.mkdir()
    req = LaunchRequest(
        "wf/t/0",
        ["true"],
        inputs=[
            InputSpec(0, path=str(private / "mirror")),
            InputSpec(1, path=str(private / "mirror"), regex=r"\.txt$"),
            InputSpec(2, path=str(tmp_path / "shared")),
        ],
    )
    prepare(w, req, False, None, private.resolve())
    for n in (0, 1):
        assert not (w / "inputs" / str(n)).is_symlink()
        assert not (w / "inputs" / str(n) / "a.txt").is_symlink()
        assert (w / "inputs" / str(n) / "a.txt").read_text() == "from a host"
    assert (w / "inputs" / "2").is_symlink()


async def test_rsync_download_does_not_make_a_setuid_file_here(api, service, cli_env, tmp_path):
    """A task may chmod its own file 4755; the CLI (maybe run by root) does not copy that."""
    env, alice = cli_env
    wf = await start_task(api, service, alice, cmd="echo x > tool; chmod 4755 tool; sleep 120")
    workdir = Path(service.task(wf, "main")["workdir"])
    await until(lambda: (workdir / "tool").exists() and (workdir / "tool").stat().st_mode & 0o4000)
    code, out, err = await osmo(
        env, "workflow", "rsync", "download", wf, "main", f"{tmp_path}:tool"
    )
    assert code == 0, (out, err)
    assert stat.S_IMODE((tmp_path / "tool").stat().st_mode) == 0o755
    await api("POST", f"workflows/{wf}/cancel", headers=alice)


def test_the_agent_reads_a_tasks_files_as_the_task_when_uploading():
    """Links are checked when listed, but a task may swap one in before the file is read:
    what the agent uploads is opened as the task, so it is never more than the task could
    read (here a root-only file in the task's own folder, as a swapped-in link would be)."""
    who = TaskIdentity("mallory", UID_LO + 99, UID_LO + 99)
    top = Path(tempfile.mkdtemp(prefix="osmo-up-", dir="/tmp"))
    try:
        top.chmod(0o755)
        src, dest = top / "out", top / "dest"
        src.mkdir()
        (src / "mine.txt").write_text("mine")
        os.chown(src / "mine.txt", who.uid, who.gid)
        upload_dir(src, f"file://{dest}", None, {}, None, opener(who))
        assert (dest / "mine.txt").read_text() == "mine"
        (src / "root-only").write_text("secret")
        (src / "root-only").chmod(0o600)
        with pytest.raises(TransferError):
            upload_dir(src, f"file://{dest}", None, {}, None, opener(who))
        assert not (dest / "root-only").exists()
    finally:
        shutil.rmtree(top, ignore_errors=True)


async def test_an_isolated_tasks_checkpoints_and_dataset_output_upload(api, service, pat, tmp_path):
    """Read as the task (agent/identity.py's opener): checkpoints while it runs, a dataset
    version at its end."""
    alice = await pat("alice")
    dest = tmp_path / "ckpt"
    script = "echo 1 > /ckpt/step1; sleep 1.2; echo out > {{output}}/o.txt; echo 2 > /ckpt/step2"
    wf = await run(
        api,
        service,
        alice,
        spec(
            "ckpt",
            task(
                "main",
                script,
                checkpoint=[{"path": "/ckpt", "url": f"file://{dest}", "frequency": "1s"}],
                outputs=[{"dataset": {"name": "made"}}],
            ),
        ),
    )
    assert service.get(wf)["status"] == "COMPLETED", await log_text(service, wf, "main")
    assert sorted(p.name for p in dest.iterdir()) == ["step1", "step2"]
    got = tmp_path / "got"
    DatasetStore(service.config.dataset_store).download("made", str(got))
    assert (got / "o.txt").read_text() == "out\n"


async def test_a_setuid_root_program_on_the_host_gives_a_task_nothing(api, service, pat):
    """A setuid-root copy of `id` left on the host: run by a task it stays the task's uid
    (the agent sets no_new_privs for everything it starts)."""
    alice = await pat("alice")
    top = Path(tempfile.mkdtemp(prefix="osmo-suid-", dir="/tmp"))
    try:
        top.chmod(0o755)
        shutil.copy(shutil.which("id") or "/usr/bin/id", top / "id")
        (top / "id").chmod(0o4755)
        wf = await run(api, service, alice, spec("suid", task("main", f"{top}/id -u; id -u")))
        printed = (await log_text(service, wf, "main")).split()
        assert printed[0] == printed[1] != "0"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_uids_skip_the_hosts_accounts_and_stay_stable(tmp_path):
    """65534 is `nobody` here: never given to a task. A user keeps their uid across agents."""
    import pwd

    taken = pwd.getpwnam("nobody").pw_uid
    first = UidMap(tmp_path, taken - 1, taken + 1)
    assert [first.of(u).uid for u in ("a", "b")] == [taken - 1, taken + 1]
    assert UidMap(tmp_path, taken - 1, taken + 1).of("b").uid == taken + 1  # read back
    with pytest.raises(ValueError, match="no free uid"):
        first.of("c")
    assert stat.S_IMODE((tmp_path / UIDS).stat().st_mode) == 0o600
