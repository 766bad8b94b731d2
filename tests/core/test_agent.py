"""The host agent: what a task sees and what the agent records of it, with real processes.

Most tests drive the agent through LocalBackend (its one client); the last ones start
`python -m osmo_core.agent` directly to check the process itself: the single-agent lock,
the idle exit and SIGTERM.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from osmo_core.agent.protocol import decode, encode
from osmo_core.backends.local import LocalBackend, socket_path
from osmo_core.errors import BackendError
from osmo_core.wire import (
    Exited,
    FileSpec,
    InputSpec,
    LaunchRequest,
    LogLine,
    Started,
    StartFailed,
    Transfer,
)
from tests.core.conftest import BackendFactory, Events, gone, req, sh, wait_gone

Local = tuple[LocalBackend, Events]


async def run(
    local: Local, request: LaunchRequest, timeout: float = 10.0
) -> tuple[Exited, list[LogLine]]:
    backend, events = local
    await backend.launch(request)
    end = await events.end(request.key, timeout)
    assert isinstance(end, Exited), end
    return end, [e for e in events.of(request.key, LogLine)]  # type: ignore[misc]


# --- output and exit ------------------------------------------------------------------------


async def test_lines_are_timestamped_in_order_in_events_and_log(local: Local) -> None:
    backend, events = local
    before = time.time()
    _, lines = await run(
        local, sh("wf/logs/0", "echo one; sleep 0.05; echo two >&2; sleep 0.05; echo three")
    )
    assert [(ln.stream, ln.text, ln.n) for ln in lines] == [
        ("stdout", "one", 1),
        ("stderr", "two", 2),
        ("stdout", "three", 3),
    ]
    assert before <= lines[0].ts <= lines[1].ts <= lines[2].ts <= time.time()
    assert lines[1].ts - lines[0].ts >= 0.04  # stamped when read, not when the task ended
    kinds = [type(e).__name__ for e in events.of("wf/logs/0")]
    assert kinds == ["Started", "LogLine", "LogLine", "LogLine", "Exited"]
    assert await backend.read_log("wf/logs/0") == lines
    assert await backend.read_log("wf/logs/0", start=1, limit=1) == lines[1:2]
    raw = Path(backend.root, "runs/wf/logs/0/log").read_text().splitlines()[0]
    stamp, stream, text = raw.split(" ", 2)
    assert (stream, text) == ("stdout", "one")
    assert stamp.endswith("Z") and len(stamp.split(".")[1]) == 7  # microseconds + Z
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert parsed.timestamp() == pytest.approx(lines[0].ts, abs=1e-6)


@pytest.mark.parametrize(
    ("script", "code", "sig"),
    [("true", 0, None), ("exit 3", 3, None), ("kill -TERM $$", 128 + 15, 15)],
)
async def test_exit_codes(local: Local, script: str, code: int, sig: int | None) -> None:
    end, _ = await run(local, sh("wf/exit/0", script))
    assert (end.exit_code, end.signal) == (code, sig)
    st = (await local[0].status(["wf/exit/0"]))["wf/exit/0"]
    assert (st.state, st.exit_code, st.signal) == ("exited", code, sig)


async def test_final_line_without_newline_and_long_lines(local: Local) -> None:
    _, lines = await run(local, sh("wf/nl/0", "printf 'a\\r\\nb'; printf 'c' >&2"))
    assert sorted((ln.stream, ln.text) for ln in lines) == [
        ("stderr", "c"),
        ("stdout", "a\r"),
        ("stdout", "b"),
    ]
    _, lines = await run(local, sh("wf/long/0", "head -c 70000 /dev/zero | tr '\\0' x; echo"))
    assert [len(ln.text) for ln in lines] == [65536, 70000 - 65536]


async def test_background_child_holding_the_pipes_does_not_hold_the_exit(local: Local) -> None:
    t0 = time.monotonic()
    _, lines = await run(local, sh("wf/bg/0", "sleep 30 & echo $!; exit 5"))
    assert time.monotonic() - t0 < 4.0
    child = int(lines[0].text)
    assert await wait_gone(child), "the rest of the process group is killed with the task"


async def test_start_failed_for_a_missing_command(local: Local) -> None:
    backend, events = local
    info = await backend.launch(req("wf/missing/0", "no-such-command-osmo"))
    end = await events.end("wf/missing/0")
    assert isinstance(end, StartFailed)
    assert "no-such-command-osmo" in end.message
    assert not events.of("wf/missing/0", Started)
    st = (await backend.status(["wf/missing/0"]))["wf/missing/0"]
    assert (st.state, st.message, st.info) == ("failed_start", end.message, info)
    log = await backend.read_log("wf/missing/0")
    assert log[0].stream == "system" and "could not start" in log[0].text


# --- what the task sees ---------------------------------------------------------------------


async def test_environment_and_gpus(local: Local) -> None:
    script = 'echo "$FOO|$CUDA_VISIBLE_DEVICES|$OSMO_OUTPUT|${CUDA_VISIBLE_DEVICES-unset}|$PWD"'
    _, lines = await run(local, sh("wf/env/0", script, env={"FOO": "x {{ output }}"}, gpus=[0, 2]))
    out = str(local[0].root / "runs/wf/env/0/output")
    assert lines[0].text == f"x {out}|0,2|{out}|0,2|{local[0].root}/runs/wf/env/0"
    _, lines = await run(local, sh("wf/env/1", 'echo "${CUDA_VISIBLE_DEVICES-unset}."'))
    assert lines[0].text == "."  # set, and empty: a CPU task cannot grab a GPU


async def test_files_relative_and_absolute_osmo_style(local: Local) -> None:
    files = [
        FileSpec("/tmp/run.sh", b"echo $0\ncat /tmp/data.txt\ncat conf/app.cfg\necho $S\n", 0o755),
        FileSpec("/tmp/data.txt", b"payload\n"),
        FileSpec("conf/app.cfg", b"out={{output}}\n", 0o600),
    ]
    env = {"S": "/tmp/data.txt /data/tmp/data.txt /tmp/data.txt.bak"}  # only whole paths move
    _, lines = await run(local, req("wf/files/0", "sh", "/tmp/run.sh", files=files, env=env))
    d = local[0].root / "runs/wf/files/0"
    assert [ln.text for ln in lines] == [
        f"{d}/files/tmp/run.sh",
        "payload",
        f"out={d}/output",
        f"{d}/files/tmp/data.txt /data/tmp/data.txt /tmp/data.txt.bak",
    ]
    assert (d / "files/tmp/run.sh").stat().st_mode & 0o777 == 0o755
    assert (d / "conf/app.cfg").stat().st_mode & 0o777 == 0o600
    assert f"cat {d}/files/tmp/data.txt" in (d / "files/tmp/run.sh").read_text()


async def test_a_file_may_not_leave_the_workdir(local: Local) -> None:
    backend, events = local
    await backend.launch(req("wf/esc/0", "true", files=[FileSpec("../../x", b"")]))
    end = await events.end("wf/esc/0")
    assert isinstance(end, StartFailed) and "inside the task's directory" in end.message


async def test_outputs_become_inputs_with_and_without_regex(local: Local) -> None:
    backend, events = local
    make = "mkdir {{output}}/sub; echo A > {{output}}/a.txt; echo B > {{output}}/sub/b.txt"
    up = await backend.launch(sh("wf/up/0", make + "; echo C > {{output}}/c.log"))
    assert isinstance(await events.end("wf/up/0"), Exited)
    _, lines = await run(
        local,
        sh(
            "wf/all/0",
            "cat {{input:0}}/a.txt {{ input:0 }}/sub/b.txt {{input:0}}/c.log",
            inputs=[InputSpec(0, path=up.output)],
        ),
    )
    assert [ln.text for ln in lines] == ["A", "B", "C"]
    _, lines = await run(
        local,
        sh(
            "wf/txt/0",
            "cd {{input:0}} && find . -type l | sort && cat sub/b.txt",
            inputs=[InputSpec(0, path=up.output, regex=r".*\.txt$")],
        ),
    )
    assert [ln.text for ln in lines] == ["./a.txt", "./sub/b.txt", "B"]


async def test_url_inputs_are_downloaded_before_the_command_starts(
    local: Local, tmp_path: Path
) -> None:
    _, events = local
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for rel, text in {"a.txt": "A", "sub/b.txt": "B", "c.bin": "C"}.items():
        (src / rel).write_text(text)
    request = sh(
        "wf/url/0",
        "cd {{input:0}} && find . -type f | sort",
        inputs=[InputSpec(0, url=f"file://{src}", regex=r"\.txt$")],
    )
    end, lines = await run(local, request)
    assert end.exit_code == 0
    assert (lines[0].stream, lines[0].text) == ("system", f"downloading file://{src}")
    assert lines[1].text.startswith("download done: 2 files, 2 B in ")
    assert [ln.text for ln in lines[2:]] == ["./a.txt", "./sub/b.txt"]
    kinds = [type(e).__name__ for e in events.of("wf/url/0")]
    assert kinds == ["LogLine", "LogLine", "Transfer", "Started", "LogLine", "LogLine", "Exited"]
    (moved,) = events.of("wf/url/0", Transfer)
    assert (moved.direction, moved.files, moved.bytes, moved.error) == ("download", 2, 2, None)


def without_runtimes(monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> None:
    """docker and podman that do not answer (installed, no daemon or no permission) first on
    PATH: the agents started next inherit it."""
    for rt in ("docker", "podman"):
        _fake_tool(bin_dir, rt, "echo cannot connect >&2; exit 125\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


async def test_image_without_a_runtime_runs_on_the_host_with_a_warning(
    backends: BackendFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    without_runtimes(monkeypatch, tmp_path / "bin")
    local = backend, _ = await backends()
    assert backend.agent["container_runtime"] is None
    _, lines = await run(local, req("wf/img/0", "echo", "on host", image="ubuntu:24.04"))
    assert [(ln.stream, ln.text) for ln in lines] == [
        (
            "system",
            "image ubuntu:24.04 ignored: no docker/podman answers on this host; "
            "running the command on the host",
        ),
        ("stdout", "on host"),
    ]
    await run(local, req("wf/img/1", "true", image="ubuntu:24.04"))
    agent_log = (backend.root / "agent.log").read_text()
    assert agent_log.count("image ubuntu:24.04 ignored") == 1  # once per agent


# --- launch, cancel, keys -------------------------------------------------------------------


async def test_launch_is_idempotent_per_key(local: Local) -> None:
    backend, events = local
    request = sh("wf/once/0", "echo run >> counter; sleep 0.3")
    first, second = await asyncio.gather(backend.launch(request), backend.launch(request))
    assert sorted([first.already_known, second.already_known]) == [False, True]
    await events.end("wf/once/0")
    third = await backend.launch(request)
    assert third.already_known and third.workdir == first.workdir
    assert Path(first.workdir, "counter").read_text() == "run\n"
    assert len(events.of("wf/once/0", Started)) == 1


async def test_cancel_kills_the_whole_process_group(local: Local) -> None:
    backend, events = local
    await backend.launch(sh("wf/cancel/0", "sleep 60 & echo $! > child; wait"))
    child_file = backend.root / "runs/wf/cancel/0/child"
    while not child_file.exists() or not child_file.read_text():
        await asyncio.sleep(0.01)
    child = int(child_file.read_text())
    await backend.cancel("wf/cancel/0", grace=5)
    end = await events.end("wf/cancel/0")
    assert isinstance(end, Exited) and (end.exit_code, end.signal) == (143, 15)
    assert await wait_gone(child)
    await backend.cancel("wf/cancel/0")  # ended: no-op
    await backend.cancel("wf/never/0")  # unknown: no-op


async def test_cancel_escalates_to_sigkill_after_the_grace(local: Local) -> None:
    backend, events = local
    await backend.launch(sh("wf/stubborn/0", "trap '' TERM; echo ready; sleep 60"))
    await events.wait("wf/stubborn/0", LogLine)
    t0 = time.monotonic()
    await backend.cancel("wf/stubborn/0", grace=0.3)
    end = await events.end("wf/stubborn/0")
    assert isinstance(end, Exited) and (end.exit_code, end.signal) == (137, 9)
    assert 0.25 <= time.monotonic() - t0 < 3


async def test_invalid_keys_are_refused(local: Local) -> None:
    backend, _ = local
    for key in ("../etc/0", "wf/t", "wf/./0", "wf/t/0/x", "wf/t t/0"):
        with pytest.raises(BackendError, match="invalid attempt key"):
            await backend.launch(req(key, "true"))
    assert (await backend.status(["wf/never/0"]))["wf/never/0"].state == "unknown"


# --- the agent process ----------------------------------------------------------------------


async def _agent(root: Path, *args: str, ready: bool = False) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "osmo_core.agent",
        "--root",
        str(root),
        "--socket",
        socket_path(root),
        *args,
        stderr=asyncio.subprocess.PIPE,
    )
    while ready and not os.path.exists(socket_path(root)):  # listening: no backend races it
        await asyncio.sleep(0.01)
    return proc


async def test_a_second_agent_on_the_same_root_exits_at_once(
    root: Path, backends: BackendFactory
) -> None:
    backend, _ = await backends()
    second = await _agent(root)
    _, err = await asyncio.wait_for(second.communicate(), 10)
    assert second.returncode == 0
    assert f"pid {backend.agent['pid']}" in err.decode() and "already serves" in err.decode()
    assert not gone(backend.agent["pid"])
    assert (root / "agent.pid").read_text() == f"{backend.agent['pid']}\n"


async def test_agent_exits_when_idle_and_releases_its_root(root: Path) -> None:
    agent = await _agent(root, "--idle-timeout", "0.5")
    assert await asyncio.wait_for(agent.wait(), 10) == 0
    assert not Path(socket_path(root)).exists() and not (root / "agent.pid").exists()
    assert "idle for" in (root / "agent.log").read_text()


async def test_sigterm_stops_tasks_and_records_their_exit(
    root: Path, backends: BackendFactory
) -> None:
    agent = await _agent(root, "--idle-timeout", "60", ready=True)
    backend, events = await backends()
    assert backend.agent["pid"] == agent.pid
    await backend.launch(sh("wf/term/0", "echo up; sleep 60"))
    await events.wait("wf/term/0", LogLine)
    agent.send_signal(signal.SIGTERM)
    end = await events.end("wf/term/0")  # pushed before the agent went
    assert isinstance(end, Exited) and end.exit_code == 143
    assert await asyncio.wait_for(agent.wait(), 10) == 0
    record = json.loads((root / "runs/wf/term/0/exit.json").read_text())
    assert (record["state"], record["exit_code"], record["log_lines"]) == ("exited", 143, 1)


async def test_raw_protocol_answers_errors_and_unknown_ops(local: Local) -> None:
    backend, _ = local
    reader, writer = await asyncio.open_unix_connection(backend.socket_path)
    writer.write(b"not json\n" + encode({"id": 7, "op": "fly"}) + encode({"id": 8, "op": "hello"}))
    answers = [decode(await reader.readline()) for _ in range(3)]
    writer.close()
    assert answers[0]["ok"] is False and answers[0]["id"] is None
    assert answers[1] == {"id": 7, "ok": False, "error": "RequestError: unknown op 'fly'"}
    assert answers[2]["ok"] and answers[2]["pid"] == backend.agent["pid"]
    assert os.stat(backend.socket_path).st_mode & 0o777 == 0o600


async def test_a_notification_is_answered_only_when_it_fails(local: Local) -> None:
    """A request without an id (the control plane's acks) gets no answer: the next line the
    client reads answers the request after it. One that fails is still answered."""
    backend, _ = local
    reader, writer = await asyncio.open_unix_connection(backend.socket_path)
    writer.write(
        encode({"op": "ack", "keys": ["wf/t/0"]})
        + encode({"id": 1, "op": "hello"})
        + encode({"op": "fly"})
        + encode({"id": 2, "op": "running"})
    )
    answers = [decode(await asyncio.wait_for(reader.readline(), 10)) for _ in range(3)]
    writer.close()
    assert answers[0]["id"] == 1 and answers[0]["ok"], answers
    assert answers[1] == {"id": None, "ok": False, "error": "RequestError: unknown op 'fly'"}
    assert answers[2] == {"id": 2, "ok": True, "keys": []}


def _fake_tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)


async def test_image_with_a_runtime_runs_in_a_container(
    tmp_path: Path, backends: BackendFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in `docker` whose `info` and `image inspect` succeed and whose `run` prints its
    # arguments: the agent (started with this PATH) takes it for a working runtime. Real
    # containers (podman): tests/core/test_containers.py.
    _fake_tool(tmp_path / "bin", "docker", '[ "$1" = run ] || exit 0\nprintf "%s\\n" "$@"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    backend, events = await backends()
    assert backend.agent["container_runtime"] == "docker"
    files = [FileSpec("/tmp/run.sh", b"echo hi {{output}}\n", 0o755)]
    request = req(
        "wf/ctr/0",
        "sh",
        "/tmp/run.sh",
        "{{output}}",
        image="alpine:3",
        gpus=[1],
        env={"A": "1"},
        files=files,
        memory=2**30,
    )
    _, lines = await run((backend, events), request)
    d = backend.root / "runs/wf/ctr/0"
    argv = [ln.text for ln in lines]
    # no --rm: the agent removes it once its end is recorded (agent/adopt.py)
    assert argv[:3] == ["run", "--name", argv[2]] and argv[2].startswith("osmo-wf-ctr-0-")
    pairs = list(itertools.pairwise(argv))
    assert ("-v", f"{d}:/osmo/run") in pairs and ("-w", "/osmo/run") in pairs
    assert ("-v", f"{d}/output:/osmo/data/output") in pairs
    assert ("-v", f"{d}/files/tmp/run.sh:/tmp/run.sh:ro") in pairs  # mounted, not rebased
    assert ("-e", "A=1") in pairs and ("-e", "OSMO_OUTPUT=/osmo/data/output") in pairs
    assert ("--gpus", "device=1") in pairs and ("--memory", str(2**30)) in pairs
    assert ("--label", f"osmo.root={backend.root}") in pairs and "--init" in argv
    assert argv[-5:] == ["--entrypoint", "sh", "alpine:3", "/tmp/run.sh", "/osmo/data/output"]
    assert (d / "files/tmp/run.sh").read_text() == "echo hi /osmo/data/output\n"
