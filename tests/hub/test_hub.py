"""The control plane as a JupyterHub service, every user's Lab in client mode (conftest.py):
alice, bob and carol each have a Lab, carol is a Hub admin, dave is in the group `osmo-admins`.
The service's restart, with the panels open, is in test_hub_browser.py."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.hub.conftest import SLEEPER, Hub, KernelChannels, TaskTerminal, call

# the first test also waits for the Hub, the service and two Labs to start
pytestmark = pytest.mark.timeout(300)

API = "osmo/api/v1"


def ids(answer: list[dict]) -> set[str]:
    return {w["id"] for w in answer}


def test_who_is_who(hub: Hub) -> None:
    """The Hub's users are OSMO's: admin flag and mapped groups make admins."""
    for user, role in (("alice", "user"), ("carol", "admin"), ("dave", "admin")):
        status, me = call(f"{hub.service_url}/{API}/me", hub.tokens[user])
        assert (status, me["name"], me["role"], me["via"]) == (200, user, role, "hub"), me
    status, me = call(f"{hub.lab('alice')}/{API}/me", hub.tokens["alice"])
    assert (status, me["name"]) == (200, "alice"), me


def test_a_token_without_the_service_scope_is_refused(hub: Hub) -> None:
    token = hub.token("bob", scopes=["read:users:name!user=bob"])
    status, body = call(f"{hub.service_url}/{API}/workflows", token)
    assert status == 401
    assert "access:services!service=osmo" in body["message"]


def test_each_user_sees_their_own_and_an_admin_all(hub: Hub, workflows: dict[str, str]) -> None:
    for user in ("alice", "bob"):
        status, listed = call(f"{hub.lab(user)}/{API}/workflows", hub.tokens[user])
        assert status == 200 and ids(listed) == {workflows[user]}, listed
    status, listed = call(f"{hub.service_url}/{API}/workflows", hub.tokens["carol"])
    assert status == 200 and set(workflows.values()) <= ids(listed)
    status, body = call(f"{hub.lab('bob')}/{API}/workflows/{workflows['alice']}", hub.tokens["bob"])
    assert status == 403 and "alice" in body["message"], body


def test_bob_cannot_enter_alices_task(hub: Hub, workflows: dict[str, str]) -> None:
    task = f"{hub.lab('bob')}/{API}/workflows/{workflows['alice']}/tasks/t"
    for path in ("kernels", "api/terminals"):
        status, body = call(f"{task}/{path}", hub.tokens["bob"], "POST", {})
        assert status == 403, (path, body)
        assert "alice" in body["message"], body  # says whose it is
    # nor through his Lab's kernel specs: alice's task is not among them
    spec = f"osmo--{workflows['alice']}--t"
    status, specs = call(f"{hub.lab('bob')}/api/kernelspecs", hub.tokens["bob"])
    assert spec not in specs["kernelspecs"]
    assert f"osmo--{workflows['bob']}--t" in specs["kernelspecs"]
    status, body = call(f"{hub.lab('bob')}/api/kernels", hub.tokens["bob"], "POST", {"name": spec})
    assert status == 404 and spec in body["message"], body


async def test_alice_opens_a_terminal_and_a_kernel_in_her_task(
    hub: Hub, workflows: dict[str, str]
) -> None:
    lab, token, wf = hub.lab("alice"), hub.tokens["alice"], workflows["alice"]
    term = await TaskTerminal.open(lab, token, wf, "t")
    try:
        await term.send("echo hub-$((6*7))\r")
        assert "hub-42" in await term.until("hub-42")
    finally:
        term.close()
    spec = f"osmo--{wf}--t"
    status, specs = call(f"{lab}/api/kernelspecs", token)
    assert spec in specs["kernelspecs"], specs
    status, kernel = call(f"{lab}/api/kernels", token, "POST", {"name": spec})
    assert status == 201, kernel
    channels = await KernelChannels.connect(lab, token, kernel["id"])
    try:
        out = await channels.execute("import os; print(os.environ['OSMO_TASK_NAME'], 6*7)")
        assert out.split() == ["t", "42"]
    finally:
        channels.close()
        call(f"{lab}/api/kernels/{kernel['id']}", token, "DELETE")


async def test_client_and_magics_in_each_users_kernel(hub: Hub, workflows: dict[str, str]) -> None:
    """No token typed: the Lab gave its kernels the way to the service, as their user."""
    for user in ("alice", "bob"):
        lab, token = hub.lab(user), hub.tokens[user]
        status, kernel = call(f"{lab}/api/kernels", token, "POST", {"name": "python3"})
        assert status == 201, kernel
        channels = await KernelChannels.connect(lab, token, kernel["id"])
        try:
            code = (
                "from osmo_jupyter import Client\n"
                "print(sorted(w['id'] for w in Client().list()))\n"
                f"open('m.yaml', 'w').write({SLEEPER.format(name='magic-' + user)!r})\n"
            )
            listed = await channels.execute(code)
            assert f"'{workflows[user]}'" in listed, listed
            assert not any(wf in listed for u, wf in workflows.items() if u != user), listed
            await channels.execute("%osmo submit m.yaml")  # its monitor is a widget
        finally:
            channels.close()
            call(f"{lab}/api/kernels/{kernel['id']}", token, "DELETE")
        status, wf = call(f"{hub.service_url}/{API}/workflows/magic-{user}-1", token)
        assert status == 200 and wf["user"] == user, wf
        call(f"{hub.service_url}/{API}/workflows/magic-{user}-1/cancel", token, "POST", {})


def test_a_hanging_service_does_not_hold_the_lab(hub: Hub, workflows: dict[str, str]) -> None:
    """The Lab's kernel list asks the service from a thread: while the service hangs (stopped),
    the Lab answers its other requests at once, and the list comes when the service does."""
    assert hub.service is not None
    lab, token = hub.lab("bob"), hub.tokens["bob"]
    os.kill(hub.service.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(1) as pool:
            specs = pool.submit(call, f"{lab}/api/kernelspecs", token)
            time.sleep(1)  # the list's request is out, waiting for the service
            started = time.monotonic()
            status, _ = call(f"{lab}/api/status", token)
            took = time.monotonic() - started
            assert status == 200 and took < 2, took
            assert not specs.done()  # the list was waiting all that time
            os.kill(hub.service.pid, signal.SIGCONT)
            status, listed = specs.result(timeout=30)
    finally:
        os.kill(hub.service.pid, signal.SIGCONT)
    assert status == 200 and f"osmo--{workflows['bob']}--t" in listed["kernelspecs"], listed
