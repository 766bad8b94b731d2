"""The scheduler with machines whose capacity is learnt late or that go offline (SSH hosts)."""

from __future__ import annotations

from osmo_core.config import PlatformConfig, PoolConfig
from osmo_core.scheduler import Scheduler
from osmo_core.spec import load_spec
from osmo_core.wire import Node

GI = 2**30


def scheduler(*nodes: Node) -> Scheduler:
    pool = PoolConfig("lab", "ssh", "any", {"any": PlatformConfig("any")})
    s = Scheduler({"lab": pool})
    s.set_nodes("ssh", list(nodes))
    return s


def workflow(cpu: int):
    text = f"""
workflow:
  name: w
  pool: lab
  resources: {{default: {{cpu: {cpu}}}}}
  tasks: [{{name: t, command: [true]}}]
"""
    return load_spec(text).workflow


def test_a_host_never_reached_is_accepted_at_submit_and_used_once_it_is() -> None:
    host = Node("h1", cpu=0, memory=0, online=False)  # as an SSH host before its first probe
    s = scheduler(host)
    wf = workflow(2)
    assert s.check(wf, "lab") == []  # it might fit: the workflow waits, it is not refused
    res = wf.resource_of(wf.all_tasks()[0])
    assert s.place("lab", res) is None
    host.cpu, host.memory, host.online = 4, 8 * GI, True  # probed: the same Node object
    a = s.place("lab", res)
    assert a is not None and a.node == "h1"
    assert s.place("lab", res) is not None  # 2 + 2 of 4 CPUs
    assert s.place("lab", res) is None
    s.release(a)
    assert s.usage()[0]["free_cpu"] == 2


def test_an_offline_host_counts_at_submit_by_its_known_capacity() -> None:
    s = scheduler(Node("h1", cpu=4, memory=8 * GI, online=False))
    assert s.check(workflow(2), "lab") == []
    [problem] = s.check(workflow(8), "lab")
    assert "more than any machine" in problem.message and "h1: cpu 4" in (problem.hint or "")


def test_a_relisting_keeps_reservations_and_a_busy_vanished_node_until_its_tasks_end() -> None:
    s = scheduler(Node("n1", cpu=4, memory=8 * GI))
    res = workflow(3).resource_of(workflow(3).all_tasks()[0])
    a = s.place("lab", res)
    assert a is not None and a.node == "n1"
    s.set_nodes("ssh", [Node("n1", cpu=4, memory=8 * GI), Node("n2", cpu=4, memory=8 * GI)])
    b = s.place("lab", res)  # n1 keeps its 3 CPUs taken: the new listing did not reset it
    assert b is not None and b.node == "n2"
    s.set_nodes("ssh", [Node("n2", cpu=4, memory=8 * GI)])  # n1 removed (scaled down) while busy
    by_name = {u["node"]: u for u in s.usage()}
    assert by_name["n1"]["online"] is False and by_name["n2"]["free_cpu"] == 1
    s.release(a)
    s.set_nodes("ssh", [Node("n2", cpu=4, memory=8 * GI)])
    assert [u["node"] for u in s.usage()] == ["n2"]  # gone once nothing runs there
