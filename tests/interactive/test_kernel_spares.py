"""Spare kernels (osmo_core/interactive/spares.py): started ahead in held tasks (not while a
task's command runs), taken by the next attach, replaced, bounded and shared fairly, and gone
with their task. Real agent, real ipykernel and jupyter_client."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient

from osmo_core.interactive.kernel import RemoteKernel
from osmo_core.service import Service
from tests.interactive.conftest import running, until
from tests.interactive.test_remote_kernel_core import stream_of

INTERACTIVE = """
workflow:
  name: {name}
  tasks:
  - name: main
    interactive: true
    command: [sh, -c]
    args: ["{cmd}"]
    environment:
      TASK_SECRET: inside-{name}
"""


def held(name: str, cmd: str = "true") -> str:
    """An `interactive: true` task that holds, waiting for its user, once `cmd` is done."""
    return INTERACTIVE.format(name=name, cmd=cmd)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def spare_of(svc: Service, wf: str) -> int:
    def pid() -> Any:
        return next((p for (w, _, _), p in svc.kernel_spares.ready().items() if w == wf), None)

    return int(await until(pid, timeout=30, what=f"a spare kernel in {wf}"))


async def test_an_attach_takes_the_spare_and_a_new_one_follows_then_both_end_with_the_task(
    service_factory: Any,
) -> None:
    svc = await service_factory()
    wf = await svc.submit(held("sp"))
    await running(svc, wf)
    first = await spare_of(svc, wf)

    asked = uuid.uuid4().hex.encode()
    k = await RemoteKernel.start(svc, wf, "main", asked)
    assert int(k.remote["pid"]) == first  # the kernel that was already up, not a new one
    info = k.connection_info()
    assert info["key"] == k.key != asked  # a spare has its own key: the client takes it
    kc = AsyncKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=20)
        code = "import os; print(os.environ['TASK_SECRET'])"
        said = await stream_of(kc, kc.execute(code), "inside-sp", 20)
        assert "inside-sp" in said  # it runs in the task, with the task's environment

        second = await spare_of(svc, wf)  # the next attach is quick too
        assert second != first and alive(second)

        await svc.cancel(wf)
        await until(
            lambda: not alive(first) and not alive(second),
            timeout=20,
            what="the taken and the spare kernel to end with their task",
        )
        await until(lambda: not svc.kernel_spares.ready(), timeout=10, what="no spare left")
    finally:
        kc.stop_channels()
        await k.close()


async def test_spares_are_bounded_and_a_freed_slot_goes_to_the_task_waiting_longest(
    service_factory: Any,
) -> None:
    svc = await service_factory(kernel_spares=1)
    a = await svc.submit(held("a"))
    await running(svc, a)
    pid_a = await spare_of(svc, a)
    b = await svc.submit(held("b"))
    await running(svc, b)
    assert [w for w, _, _ in svc.kernel_spares.ready()] == [a]  # one slot, taken by a

    k = await RemoteKernel.start(svc, a, "main", b"unused")
    assert int(k.remote["pid"]) == pid_a
    await spare_of(svc, b)  # b waited longest: the slot is its, not a's new spare's
    assert [w for w, _, _ in svc.kernel_spares.ready()] == [b]
    await k.kill()
    await k.close()


async def test_no_spares_when_the_admin_says_none(service_factory: Any) -> None:
    svc = await service_factory(kernel_spares=0)
    wf = await svc.submit(held("none"))
    await running(svc, wf)
    k = await RemoteKernel.start(svc, wf, "main", b"the-clients-key")
    try:
        assert k.connection_info()["key"] == b"the-clients-key"  # started for this client
        assert svc.kernel_spares.ready() == {}
    finally:
        await k.kill()
        await k.close()


async def test_a_task_held_before_a_restart_gets_a_spare_from_the_new_control_plane(
    service_factory: Any, tmp_path: Any
) -> None:
    data = tmp_path / "osmo"
    svc = await service_factory(data, kernel_spares=0)
    wf = await svc.submit(held("held"))
    await until(lambda: svc.task(wf, "main")["hold"] == "interactive", what="the hold")
    await svc.stop()

    svc2 = await service_factory(data)
    await running(svc2, wf)
    await spare_of(svc2, wf)


async def test_an_attach_while_the_spare_starts_waits_for_it_rather_than_starting_another(
    service_factory: Any,
) -> None:
    svc = await service_factory()
    wf = await svc.submit(held("early"))
    await running(svc, wf)
    spares = svc.kernel_spares
    await until(lambda: any(w == wf for w, _, _ in spares._starting), what="a spare starting")
    assert not spares.ready()  # still starting: ipykernel's import takes ~1 s

    asked = uuid.uuid4().hex.encode()
    k = await RemoteKernel.start(svc, wf, "main", asked)
    try:
        assert k.key != asked  # the spare's key: the attach waited for it
        await spare_of(svc, wf)  # and the next one follows
    finally:
        await k.kill()
        await k.close()


async def test_a_freed_slot_goes_to_the_user_with_fewer_spares_before_an_older_want(
    service_factory: Any,
) -> None:
    """A team server: alice's third held task waits longer than bob's first, but alice already
    has a spare and bob none, so bob's task gets the slot."""
    svc = await service_factory(kernel_spares=2, local={"cpus": 8})
    alice = [await svc.submit(held(f"a{i}"), user="alice") for i in (1, 2)]
    for wf in alice:
        await running(svc, wf)
        await spare_of(svc, wf)
    a3 = await svc.submit(held("a3"), user="alice")
    await running(svc, a3)
    bob = await svc.submit(held("b"), user="bob")
    await running(svc, bob)

    k = await RemoteKernel.start(svc, alice[0], "main", b"unused")
    try:
        await spare_of(svc, bob)
        assert {w for w, _, _ in svc.kernel_spares.ready()} == {alice[1], bob}
    finally:
        await k.kill()
        await k.close()


async def test_no_spare_while_the_command_runs_one_once_the_task_holds(
    service_factory: Any,
) -> None:
    """A kernel nobody asked for must not compete with a running command for its task's memory
    and CPU: the spare waits for the hold."""
    svc = await service_factory()
    wf = await svc.submit(held("busy", cmd="sleep 3"))
    await running(svc, wf)
    await asyncio.sleep(1.0)  # a spare would be starting by now
    assert svc.task(wf, "main")["hold"] is None  # the command still runs
    assert not svc.kernel_spares.ready() and not svc.kernel_spares._starting
    await spare_of(svc, wf)
    assert svc.task(wf, "main")["hold"] == "interactive"
