"""Workflows on SSH hosts through the whole engine: placement, DAGs across hosts, a host lost
mid-task, and interactive exec into a task on a host."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from sshhosts import Hosts, until

from osmo_core.errors import Conflict, PlacementError
from osmo_core.service import Service
from tests.core.test_engine import attempts
from tests.core.test_group_restart import group_spec, runs

WAIT = 60  # seconds a workflow may take here, at most


async def finished(svc: Service, wf: str) -> str:
    return str((await asyncio.wait_for(svc.wait(wf), WAIT)).value)


async def text_of(svc: Service, wf: str, task: str) -> list[str]:
    return [ln.text for ln in await svc.logs(wf, task) if ln.stream == "stdout"]


def users(hosts: Hosts) -> dict[str, str]:
    return {h.alias: h.user for h in hosts.hosts}


async def test_placement_by_capacity_gpus_and_architecture(ssh_service, hosts: Hosts) -> None:
    """h1: 1 cpu and GPUs 0,1 (declared); h2: 1 cpu and an aarch64 override (a Jetson)."""
    svc = await ssh_service(
        platforms={
            "any": {"hosts": ["h1", "h2"]},
            "orin": {"hosts": ["h1", "h2"], "arch": "aarch64"},
            "bad": {"hosts": ["h1"], "arch": "aarch64"},
        },
        hosts={"h1": {"cpus": 1, "gpus": [0, 1]}, "h2": {"cpus": 1, "arch": "aarch64"}},
    )
    lab = {r["node"]: r for r in svc.resources() if r["backend"] == "lab"}
    assert lab["h1"]["gpus"] == [0, 1] and lab["h1"]["cpu"] == 1 and lab["h1"]["online"]
    assert lab["h2"]["arch"] == "aarch64" and lab["h1"]["arch"] == "x86_64"
    tasks = "".join(
        f"  - {{name: t{i}, command: [sh, -c, 'sleep 0.5; whoami']}}\n" for i in range(3)
    )
    wf = await svc.submit(f"workflow:\n  name: three\n  pool: lab\n  tasks:\n{tasks}")
    assert await finished(svc, wf) == "COMPLETED"
    placed = {t: svc.task(wf, t)["node"] for t in ("t0", "t1", "t2")}
    assert set(placed.values()) == {"h1", "h2"}  # one cpu each: spread, the third waited
    for t, node in placed.items():
        assert await text_of(svc, wf, t) == [users(hosts)[node]]  # ran there, as its user
    wf = await svc.submit(
        """
workflow:
  name: kinds
  pool: lab
  resources:
    gpu: {gpu: 1, platform: any}
    jetson: {platform: orin}
  tasks:
  - {name: g, resource: gpu, command: [sh, -c, 'echo gpu=$CUDA_VISIBLE_DEVICES']}
  - {name: j, resource: jetson, command: [whoami]}
"""
    )
    assert await finished(svc, wf) == "COMPLETED"
    assert svc.task(wf, "g")["node"] == "h1" and svc.task(wf, "j")["node"] == "h2"
    assert (await text_of(svc, wf, "g"))[0] in ("gpu=0", "gpu=1")
    assert await text_of(svc, wf, "j") == [users(hosts)["h2"]]
    bad = "workflow:\n  name: nope\n  pool: lab\n  resources: {default: {platform: bad}}\n"
    with pytest.raises(PlacementError, match="platform 'bad'"):
        await svc.submit(bad + "  tasks:\n  - {name: t, command: [true]}\n")


DAG = """
workflow:
  name: across
  pool: lab
  resources:
    one: {platform: on-h1}
    two: {platform: on-h2}
  groups:  # OSMO refuses `tasks` beside `groups`: each task is a group of its own
  - name: make-group
    tasks:
    - name: make
      resource: one
      command: [sh, -c, 'echo made-by-$(whoami) > {{output}}/data.txt']
  - name: use-group
    tasks:
    - name: use
      resource: two
      inputs: [{task: make}]
      command: [sh, -c]
      args: ['cat {{input:0}}/data.txt; echo make-ran-on={{host:make}}; whoami > {{output}}/who']
  - name: back-group
    tasks:
    - name: back
      resource: one
      inputs: [{task: use}, {task: make}]
      command: [sh, -c, 'cat {{input:0}}/who {{input:1}}/data.txt']
  - name: pair
    tasks:
    - {name: server, lead: true, resource: one, command: [echo, 'client-on={{host:client}}']}
    - {name: client, resource: two, command: [echo, 'server-on={{host:server}}']}
"""


async def test_a_dag_across_two_hosts_passes_data_and_host_addresses(
    ssh_service, hosts: Hosts
) -> None:
    svc = await ssh_service(platforms={"on-h1": {"hosts": ["h1"]}, "on-h2": {"hosts": ["h2"]}})
    wf = await svc.submit(DAG)
    assert await finished(svc, wf) == "COMPLETED"
    u = users(hosts)
    h1 = hosts.hosts[0]
    assert await text_of(svc, wf, "use") == [f"made-by-{u['h1']}", f"make-ran-on={h1.addr}"]
    assert await text_of(svc, wf, "back") == [u["h2"], f"made-by-{u['h1']}"]
    # a group spanning both hosts: each task knows the other's address
    assert await text_of(svc, wf, "server") == [f"client-on={hosts.hosts[1].addr}"]
    assert await text_of(svc, wf, "client") == [f"server-on={h1.addr}"]


async def test_exec_into_a_task_on_a_host(ssh_service, hosts: Hosts) -> None:
    svc = await ssh_service()
    wf = await svc.submit(
        "workflow:\n  name: long\n  pool: lab\n  tasks:\n"
        "  - {name: main, command: [sh, -c, 'echo ready > marker; "
        "exec python3 -m http.server 8765 --bind 127.0.0.1']}\n"
    )
    await until(lambda: svc.task(wf, "main")["status"] == "RUNNING", what="RUNNING")
    node = svc.task(wf, "main")["node"]
    await until(lambda: f"lab@{node}" in svc.interactive.agents, what="the agent to dial home")
    sess = await svc.interactive.exec(wf, "main", ["sh", "-c", "cat marker; whoami; exit 3"])
    out = b""
    while chunk := await asyncio.wait_for(sess.read(), 10):
        out += chunk
    assert out.decode().split() == ["ready", users(hosts)[node]]
    assert await sess.wait() == {"exit_code": 3, "signal": None}

    async def get() -> bytes:  # port-forward to the task's port on its host (its namespace)
        try:
            reader, writer = await svc.interactive.open_port(wf, "main", 8765)
        except Conflict:  # the server does not listen yet
            return b""
        writer.write(b"GET /marker HTTP/1.0\r\n\r\n")
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return reply

    reply = await until(get, what="the task's web server through a forward")
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"\r\n\r\nready\n")
    await svc.cancel(wf)


async def test_a_host_lost_mid_task_reschedules_onto_the_other(ssh_service, hosts: Hosts) -> None:
    svc = await ssh_service()
    wf = await svc.submit(
        "workflow:\n  name: survive\n  pool: lab\n  tasks:\n"
        "  - {name: main, command: [sh, -c, 'sleep 3; whoami']}\n"
    )
    await until(lambda: svc.task(wf, "main")["status"] == "RUNNING", what="RUNNING")
    first = svc.task(wf, "main")["node"]
    victim = next(h for h in hosts.hosts if h.alias == first)
    hosts.kill(victim)
    try:
        assert await finished(svc, wf) == "COMPLETED"
        attempts = svc.task(wf, "main")["attempts"]
        assert attempts[0]["status"] == "FAILED_BACKEND_ERROR"
        assert f"host {first} is unreachable" in attempts[0]["message"]
        other = attempts[-1]["node"]
        assert other != first and attempts[-1]["status"] == "COMPLETED"
        assert await text_of(svc, wf, "main") == [users(hosts)[other]]
        assert not svc.backends["lab"].host_status()[first]["online"]
    finally:
        hosts.start_sshd(victim)
    # back: the host is rechecked and comes online again with a new agent
    await until(lambda: svc.backends["lab"].host_status()[first]["online"], what="recheck")


async def test_a_retry_does_not_go_to_an_offline_host(ssh_service, hosts: Hosts) -> None:
    """The host dies while its finished task's outputs are being fetched: the attempt is lost
    at once (not after lost_grace), and its retries go to the other host, not to the dead one
    (whose link is down although no reconnection has failed yet), backing off meanwhile."""
    svc = await ssh_service()
    lab = svc.backends["lab"]
    wf = await svc.submit(
        "workflow:\n  name: fetched\n  pool: lab\n  tasks:\n  - name: main\n"
        "    command: [sh, -c, 'head -c 200000000 /dev/zero > {{output}}/big']\n"
    )
    await until(lambda: svc.task(wf, "main")["node"], what="placed")
    first = svc.task(wf, "main")["node"]
    victim = next(h for h in hosts.hosts if h.alias == first)
    mirrored = lab.hosts[first].mirror / "runs" / wf / "main" / "0" / "output" / "big"
    for _ in range(WAIT * 100):  # the fetch has begun: bounded, 60 s
        if mirrored.exists():
            break
        await asyncio.sleep(0.01)
    assert mirrored.exists(), f"no fetch of the output seen: {svc.task(wf, 'main')}"
    hosts.kill(victim)
    try:
        assert await finished(svc, wf) == "COMPLETED"
        attempts = svc.task(wf, "main")["attempts"]
        assert attempts[0]["status"] == "FAILED_BACKEND_ERROR"
        assert "could not be fetched" in attempts[0]["message"], attempts[0]
        other = "h2" if first == "h1" else "h1"
        assert attempts[1:] and all(a["node"] == other for a in attempts[1:]), attempts
        assert attempts[-1]["status"] == "COMPLETED"
        online = {r["node"]: r["online"] for r in svc.resources() if r["backend"] == "lab"}
        assert not online[first], online  # the engine's view, not only the backend's
    finally:
        hosts.start_sshd(victim)
    # back: online again for the backend and for the engine's placement
    await until(lambda: lab.host_status()[first]["online"], what="recheck")
    online = {r["node"]: r["online"] for r in svc.resources() if r["backend"] == "lab"}
    assert online[first], online


async def test_a_restarted_control_plane_picks_up_a_task_on_a_host(
    ssh_service, hosts: Hosts
) -> None:
    """Agents outlive the engine: a task that ends while no control plane runs is found
    ended on restart, with its output fetched for the task after it."""
    svc = await ssh_service(platforms={"on-h1": {"hosts": ["h1"]}, "on-h2": {"hosts": ["h2"]}})
    wf = await svc.submit(
        """
workflow:
  name: restart
  pool: lab
  resources:
    one: {platform: on-h1}
    two: {platform: on-h2}
  tasks:
  - {name: a, resource: one, command: [sh, -c, 'sleep 2; echo kept > {{output}}/x']}
  - {name: b, resource: two, inputs: [{task: a}], command: [cat, '{{input:0}}/x']}
"""
    )
    await until(lambda: svc.task(wf, "a")["status"] == "RUNNING", what="a RUNNING")
    await svc.stop()  # the agent on h1 goes on running `a`
    await asyncio.sleep(2.5)
    again = await ssh_service(platforms={"on-h1": {"hosts": ["h1"]}, "on-h2": {"hosts": ["h2"]}})
    assert await finished(again, wf) == "COMPLETED"
    assert await text_of(again, wf, "b") == ["kept"]


async def test_an_agent_killed_on_a_live_host_is_replaced_and_its_task_rescheduled(
    ssh_service, hosts: Hosts
) -> None:
    svc = await ssh_service(platforms={"on-h1": {"hosts": ["h1"]}})
    wf = await svc.submit(
        "workflow:\n  name: agent\n  pool: lab\n  resources: {default: {platform: on-h1}}\n"
        "  tasks:\n  - {name: main, command: [sh, -c, 'sleep 2; echo second-try-done']}\n"
    )
    await until(lambda: svc.task(wf, "main")["status"] == "RUNNING", what="RUNNING")
    h1 = hosts.hosts[0]
    pid_file = h1.agent_root(svc.backends["lab"].root) / "agent.pid"
    pid = int(pid_file.read_text())
    hosts.kill_agent(h1)
    assert await finished(svc, wf) == "COMPLETED"
    attempts = svc.task(wf, "main")["attempts"]
    assert [a["status"] for a in attempts] == ["FAILED_BACKEND_ERROR", "COMPLETED"]
    assert await text_of(svc, wf, "main") == ["second-try-done"]
    assert int(pid_file.read_text()) != pid  # a new agent took over


async def test_two_control_planes_on_one_host_keep_to_their_own_attempts(
    ssh_service, hosts: Hosts
) -> None:
    """Two control planes (two data folders) log in to h1 as the same user and run workflows
    whose attempt keys are equal: each has its own agent root there, so both run, neither
    adopts the other's attempt, and one's restart finds only its own."""
    h1 = hosts.hosts[0]
    spec = (
        "workflow:\n  name: twin\n  pool: lab\n  resources: {default: {platform: on-h1}}\n"
        "  tasks:\n  - {name: main, command: [sh, -c, 'sleep 3; echo from-%s']}\n"
    )
    on_h1 = {"on-h1": {"hosts": ["h1"]}}
    a, b = await ssh_service(on_h1, home="a"), await ssh_service(on_h1, home="b")
    wf_a, wf_b = await a.submit(spec % "a"), await b.submit(spec % "b")
    assert wf_a == wf_b  # the same attempt key on the same host and login
    for svc in (a, b):
        await until(lambda s=svc: s.task(wf_a, "main")["status"] == "RUNNING", what="RUNNING")
    roots = {h1.agent_root(svc.backends["lab"].root) for svc in (a, b)}
    assert len(roots) == 2 and all((r / "agent.pid").exists() for r in roots), roots
    assert len(h1.agent_pids()) == 2  # an agent each
    await a.stop()  # a's agent goes on running its task meanwhile
    again = await ssh_service(on_h1, home="a")
    for svc, who in ((again, "a"), (b, "b")):
        assert await finished(svc, wf_a) == "COMPLETED"
        attempts = svc.task(wf_a, "main")["attempts"]
        assert [x["status"] for x in attempts] == ["COMPLETED"], attempts
        assert await text_of(svc, wf_a, "main") == [f"from-{who}"]


SPANNING = """
workflow:
  name: spanning
  pool: lab
  resources:
    here: {platform: here}
    one: {platform: on-h1}
    two: {platform: on-h2}
  tasks:
  - name: start
    resource: here
    command: [sh, -c, 'echo from-here > {{output}}/seed.txt']
  - name: first
    resource: one
    inputs: [{task: start}]
    command: [sh, -c, 'cat {{input:0}}/seed.txt > {{output}}/a; whoami >> {{output}}/a']
  - name: second
    resource: two
    inputs: [{task: first}]
    command: [sh, -c, 'cat {{input:0}}/a > {{output}}/b; whoami >> {{output}}/b']
  - name: finish
    resource: here
    inputs: [{task: second}]
    command: [cat, '{{input:0}}/b']
"""


async def test_one_workflow_spans_this_machine_and_two_hosts(ssh_service, hosts: Hosts) -> None:
    # a platform may name its own backend: one pool, one workflow, local and SSH machines
    svc = await ssh_service(
        platforms={
            "here": {"backend": "local"},
            "on-h1": {"hosts": ["h1"]},
            "on-h2": {"hosts": ["h2"]},
        }
    )
    wf = await svc.submit(SPANNING)
    assert await finished(svc, wf) == "COMPLETED"
    u = users(hosts)
    assert await text_of(svc, wf, "finish") == ["from-here", u["h1"], u["h2"]]
    placed = {t: svc.task(wf, t)["backend"] for t in ("start", "first", "second", "finish")}
    assert placed == {"start": "local", "first": "lab", "second": "lab", "finish": "local"}
    pools = {p["name"]: p for p in svc.pools_info()}
    assert {n["backend"] for n in pools["lab"]["nodes"]} == {"local", "lab"}


async def test_a_log_is_paged_and_tailed_on_a_host(ssh_service, hosts: Hosts) -> None:
    """A page of a live log over SFTP (read a chunk at a time), and the tail of an ended one
    (from its mirror here)."""
    svc = await ssh_service(platforms={"any": {"hosts": ["h1"]}}, hosts={"h1": {"cpus": 1}})
    wf = await svc.submit(
        "workflow:\n  name: paged\n  pool: lab\n  tasks:\n"
        "  - {name: t, command: [sh, -c, 'seq 3000; sleep 60']}\n"
    )

    async def page() -> list[str]:
        if svc.task(wf, "t")["status"] != "RUNNING":
            return []
        lines = [ln.text for ln in await svc.logs(wf, "t", start=2000, limit=5)]
        return lines if len(lines) == 5 else []  # seq may still be writing

    got = await until(lambda: page(), WAIT, "a page of the live log")
    assert got == ["2001", "2002", "2003", "2004", "2005"]
    await svc.cancel(wf)
    assert await finished(svc, wf) == "FAILED_CANCELED"
    tail = await svc.logs(wf, "t", tail=5)
    assert len(tail) == 5 and "3000" in [ln.text for ln in tail if ln.stream == "stdout"]


async def test_a_rescheduled_lead_restarts_its_peers_in_place_on_hosts(
    ssh_service, hosts: Hosts, tmp_path_factory
) -> None:
    """tests/core/test_group_restart.py's barrier group on the hosts: the lead exits with its
    RESCHEDULE code once, its two peers are restarted on the host and cores they had, and
    all end COMPLETED; each command leaves a mark per run in a folder the hosts' users share."""
    svc = await ssh_service(hosts={"h1": {"cpus": 2}, "h2": {"cpus": 2}})
    marks = Path(tempfile.mkdtemp(prefix="osmo-marks-", dir="/tmp"))  # hosts' users reach it
    marks.chmod(0o1777)
    try:
        spec = group_spec(marks)
        spec["workflow"]["pool"] = "lab"
        wf_id = await svc.submit(spec)
        assert await finished(svc, wf_id) == "COMPLETED"
        wf = svc.get(wf_id)
        assert {n: runs(marks, n) for n in "abc"} == dict.fromkeys("abc", 2)
        assert [t["status"] for t in attempts(wf, "a")] == ["RESCHEDULED", "COMPLETED"]
        for peer in ("b", "c"):
            first, second = svc.task(wf_id, peer)["attempts"]
            assert (first["status"], second["status"]) == ("RESCHEDULED", "COMPLETED")
            assert second["node"] == first["node"] in ("h1", "h2")
            assert await text_of(svc, wf_id, peer) == ["run 2"]  # the latest attempt's log
    finally:
        shutil.rmtree(marks, ignore_errors=True)
