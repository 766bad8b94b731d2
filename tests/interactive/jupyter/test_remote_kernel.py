"""Kernels inside running tasks, through a real Jupyter server: the kernelspec "OSMO: WF/TASK",
jupyter_server's own kernel API and channels WebSocket, real ipykernel in the task (started by
the real agent that dialled home), tunnelled over its SSH connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from osmo_jupyter._attach import spec_name
from tests.interactive.conftest import long_spec, until
from tests.interactive.jupyter.conftest import start_task


# cwd and env of the task: `marker` in its workdir, TASK_SECRET in its environment
@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    """Tasks run as the server (root) here: a kernel inside a task needs the server's Python
    with ipykernel, which lives under /root (0700) on this machine, out of an isolated task's
    reach. Kernels inside isolated tasks are tests/security/test_task_isolation.py's."""
    jp_server_config["OsmoConfig"]["task_isolation"] = "none"
    return jp_server_config


WHERE = "import os; print(open('marker').read().strip(), os.environ['TASK_SECRET'])"


async def end(api: Any, service: Any, wf: str, headers: dict[str, str]) -> None:
    """Cancel and wait: the server's teardown waits 10 s for an agent with running tasks."""
    await api("POST", f"workflows/{wf}/cancel", headers=headers)
    await until(lambda: service.get(wf)["status"] != "RUNNING", what="the workflow to end")


async def jp(jp_fetch: Any, method: str, *path: str, headers: Any, body: Any = None) -> Any:
    if body is not None:
        body = json.dumps(body)
    elif method == "POST":
        body = b"{}"
    resp = await jp_fetch(*path, method=method, body=body, headers=headers)
    return json.loads(resp.body) if resp.body else None


async def iopub_back(ch: Channels, tries: int = 10) -> None:
    """After a reconnection, ZMQ re-subscribes the server's iopub socket a moment later, and
    what the kernel publishes before that is not delivered (as with any ZMQ SUB; jupyter_server
    nudges for the same reason): run a no-op until its output arrives again, bounded."""
    for _ in range(tries):
        with contextlib.suppress(AssertionError, asyncio.TimeoutError):
            if (await ch.execute("print('back')", timeout=3))[0] == "back\n":
                return
    raise AssertionError(f"iopub did not come back after the re-dial ({tries} tries)")


class Channels:
    """A kernel's /api/kernels/{id}/channels WebSocket, as JupyterLab speaks it."""

    def __init__(self, ws: Any):
        self.ws = ws
        self.session = uuid.uuid4().hex

    @classmethod
    async def open(cls, jp_ws_fetch: Any, kernel_id: str, headers: Any) -> Channels:
        return cls(await jp_ws_fetch("api", "kernels", kernel_id, "channels", headers=headers))

    async def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": "test",
            "session": self.session,
            "version": "5.3",
            "date": "",
        }
        msg = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        await self.ws.write_message(json.dumps({**msg, "channel": channel}))
        return msg_id

    async def execute(self, code: str, timeout: float = 20) -> tuple[str, dict[str, Any]]:
        """stdout+stderr of `code` and its execute_reply content."""
        msg_id = await self.send(
            "execute_request",
            {"code": code, "silent": False, "store_history": False, "allow_stdin": False},
        )
        return await self.collect(msg_id, timeout)

    async def collect(self, msg_id: str, timeout: float = 20) -> tuple[str, dict[str, Any]]:
        out, reply, idle = "", None, False
        deadline = time.monotonic() + timeout
        while reply is None or not idle:
            left = deadline - time.monotonic()
            assert left > 0, f"no reply to {msg_id} in {timeout}s (so far {out!r})"
            raw = await asyncio.wait_for(self.ws.read_message(), left)
            assert raw is not None, f"channels closed (so far {out!r})"
            msg = json.loads(raw)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out += msg["content"]["text"]
            elif kind == "error":
                out += msg["content"]["ename"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
            elif kind == "execute_reply":
                reply = msg["content"]
        return out, reply


async def test_a_running_task_is_a_kernelspec_and_its_kernel_runs_inside_it(
    api, service, pat, jp_fetch, jp_ws_fetch
):
    alice = await pat("alice")
    wf = await start_task(api, service, alice)
    name = spec_name(wf, "main")
    specs = (await jp(jp_fetch, "GET", "api", "kernelspecs", headers=alice))["kernelspecs"]
    assert specs[name]["spec"]["display_name"] == f"OSMO: {wf}/main"
    assert "python3" not in specs  # the server's own kernels are its admins' (authorizer.py)
    admin = (await jp(jp_fetch, "GET", "api", "kernelspecs", headers={}))["kernelspecs"]
    assert {name, "python3"} <= set(admin)
    bob = await pat("bob")
    assert name not in (await jp(jp_fetch, "GET", "api", "kernelspecs", headers=bob))["kernelspecs"]

    kernel = await jp(jp_fetch, "POST", "api", "kernels", headers=alice, body={"name": name})
    ch = await Channels.open(jp_ws_fetch, kernel["id"], alice)
    out, reply = await ch.execute(WHERE + "; x = 41")
    assert (out, reply["status"]) == ("ready inside-the-task\n", "ok")

    # interrupt a sleeping cell (SIGINT through the control port in the task)
    msg_id = await ch.send("execute_request", {"code": "import time; time.sleep(60)"})
    await asyncio.sleep(0.5)
    await jp(jp_fetch, "POST", "api", "kernels", kernel["id"], "interrupt", headers=alice)
    out, reply = await ch.collect(msg_id, timeout=10)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", (out, reply)
    out, _ = await ch.execute("x += 1; print(x)")
    assert out == "42\n"

    # a forced drop of the agent's SSH connection: it dials again, the kernel keeps its state
    old = service.interactive.agents["local"]
    old.close()
    await until(lambda: service.interactive.agents.get("local") not in (None, old), what="re-dial")
    await iopub_back(ch)
    out, _ = await ch.execute("print(x)", timeout=30)
    assert out == "42\n"

    # restart: a fresh kernel in the same task, through the same local ports
    await jp(jp_fetch, "POST", "api", "kernels", kernel["id"], "restart", headers=alice)
    ch = await Channels.open(jp_ws_fetch, kernel["id"], alice)
    out, _ = await ch.execute("print('x' in dir()); " + WHERE)
    assert out == "False\nready inside-the-task\n"

    # the task ends while a cell runs: the cell says why, the server drops the kernel
    msg_id = await ch.send("execute_request", {"code": "import time; time.sleep(60)"})
    await asyncio.sleep(0.3)
    await api("POST", f"workflows/{wf}/cancel", headers=alice)
    seen = ""
    deadline = time.monotonic() + 15
    while "[osmo]" not in seen:
        assert time.monotonic() < deadline, seen
        raw = await asyncio.wait_for(ch.ws.read_message(), 15)
        assert raw is not None
        msg = json.loads(raw)
        if msg["msg_type"] == "stream" and msg["parent_header"].get("msg_id") == msg_id:
            seen += msg["content"]["text"]
    assert f"task {wf}/main ended (FAILED_CANCELED" in seen, seen

    async def gone() -> bool:
        try:
            await jp_fetch("api", "kernels", kernel["id"], headers=alice)
        except HTTPClientError as e:
            return e.code == 404
        return False

    await until(gone, timeout=15, what="the server to drop the kernel")


async def test_another_users_task_kernel_is_refused(api, service, pat, jp_fetch):
    alice, bob = await pat("alice"), await pat("bob")
    wf = await start_task(api, service, alice)
    try:
        await jp_fetch(
            "api", "kernels", method="POST", headers=bob,
            body=json.dumps({"name": spec_name(wf, "main")}),
        )  # fmt: skip
        raise AssertionError("bob started a kernel in alice's task")
    except HTTPClientError as e:
        assert e.code == 403, e
    err = await api("POST", f"workflows/{wf}/tasks/main/kernels", headers=bob, status=403)
    assert "belongs to another user" in err["message"]
    await end(api, service, wf, alice)


async def test_a_task_without_ipykernel_gets_a_clear_error(
    api, service, pat, tmp_path, jp_fetch, jp_serverapp
):
    alice = await pat("alice")
    # a Python on the task's PATH that has no ipykernel: python3 -I -S hides site-packages
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text('#!/bin/sh\nexec /usr/bin/env -i /usr/bin/python3 -I -S "$@"\n')
    (bindir / "python3").chmod(0o755)
    cmd = f"PATH={bindir}:$PATH exec sleep 120"
    wf = await start_task(api, service, alice, cmd=cmd)
    err = await api("POST", f"workflows/{wf}/tasks/main/kernels", headers=alice, status=409)
    assert "no ipykernel in the task's Python" in err["message"]
    assert "pip install ipykernel" in err["message"]
    # JupyterLab's way in fails the same, and leaves nothing behind that would stop the
    # server's shutdown (once, `shutdown_all` asked for the failed kernel: 404, and hung).
    with pytest.raises(HTTPClientError) as lab:
        body = json.dumps({"name": spec_name(wf, "main")})
        await jp_fetch("api", "kernels", method="POST", headers=alice, body=body)
    assert lab.value.code == 409
    assert "pip install ipykernel" in json.loads(lab.value.response.body)["message"]
    await asyncio.wait_for(jp_serverapp.kernel_manager.shutdown_all(), 10)
    await end(api, service, wf, alice)


def attach_and_run(url: str, headers: dict[str, str], wf: str, code: str) -> tuple[str, str]:
    """What a user's script does, blocking (call it on a thread: the server shares the test's
    loop): `Client.attach` to the task's kernel through the server, run `code`; its output and
    status."""
    from osmo_jupyter import Client

    client = Client(url, token=headers["Authorization"].split()[1])
    kc = client.attach(wf, "main", timeout=30)
    try:
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = kc.execute_interactive(code, timeout=20, output_hook=hook)
        return "".join(out), reply["content"]["status"]
    finally:
        kc.osmo.close()


async def test_client_attach_executes_inside_the_task_through_the_server(
    api, service, pat, jp_http_port, jp_base_url
):
    from osmo_core.client import ApiError

    alice, bob = await pat("alice"), await pat("bob")
    wf = await start_task(api, service, alice)
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"

    said = await asyncio.to_thread(attach_and_run, url, alice, wf, WHERE)
    assert said == ("ready inside-the-task\n", "ok")
    try:
        await asyncio.to_thread(attach_and_run, url, bob, wf, WHERE)
        raise AssertionError("bob attached to alice's task")
    except ApiError as e:
        assert e.status == 403 and "belongs to another user" in e.message
    await until(lambda: not service_kernels(service), what="the kernel to be shut down")
    await end(api, service, wf, alice)


def service_kernels(service: Any) -> list[str]:
    return [k for k in service_kernel_manager(service).list_kernel_ids()]


def service_kernel_manager(service: Any) -> Any:
    from jupyter_server.serverapp import ServerApp

    return ServerApp.instance().kernel_manager


async def test_osmo_attach_switches_the_notebooks_kernel(api, service, jp_fetch, jp_ws_fetch):
    wf = await start_task(api, service, {})
    made = await jp(
        jp_fetch, "POST", "api", "sessions", headers={},
        body={"path": "nb.ipynb", "type": "notebook", "name": "nb", "kernel": {"name": "python3"}},
    )  # fmt: skip
    ch = await Channels.open(jp_ws_fetch, made["kernel"]["id"], {})
    out, reply = await ch.execute(f"%osmo attach {wf}/main", timeout=40)
    assert reply["status"] == "ok", out
    assert f"now runs inside {wf}/main" in out and "Change Kernel... > python3" in out

    async def switched() -> Any:
        s = await jp(jp_fetch, "GET", "api", "sessions", made["id"], headers={})
        return s if s["kernel"]["name"] == spec_name(wf, "main") else None

    session = await until(switched, timeout=20, what="the session's kernel to change")
    ch = await Channels.open(jp_ws_fetch, session["kernel"]["id"], {})
    out, _ = await ch.execute(WHERE)
    assert out == "ready inside-the-task\n"

    async def old_gone() -> bool:
        ids = {k["id"] for k in await jp(jp_fetch, "GET", "api", "kernels", headers={})}
        return made["kernel"]["id"] not in ids

    await until(old_gone, timeout=15, what="the notebook's old kernel to be shut down")
    await end(api, service, wf, {})


async def test_cli_kernel_writes_a_connection_file_for_jupyter_clients(
    api,
    service,
    cli_env,
):
    from jupyter_client.blocking import BlockingKernelClient

    from tests.conftest import osmo_cli

    env, alice = cli_env
    wf = await start_task(api, service, alice)
    proc = await asyncio.create_subprocess_exec(
        *osmo_cli("workflow", "kernel", wf, "main", "--file", "k.json"),
        env=env,
        cwd=os.path.dirname(env["OSMO_HOME"]),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines = [await asyncio.wait_for(proc.stdout.readline(), 60) for _ in range(3)]
        assert lines[1].decode().startswith("connect with: jupyter console --existing ")
        file = lines[2].decode().strip()

        def client() -> str:  # what `jupyter console --existing FILE` does, blocking
            kc = BlockingKernelClient(connection_file=file)
            kc.load_connection_file()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=30)
                out: list[str] = []
                kc.execute_interactive(
                    WHERE,
                    timeout=20,
                    output_hook=lambda m: out.append(m["content"].get("text", "")),
                )
                return "".join(out)
            finally:
                kc.stop_channels()

        assert await asyncio.to_thread(client) == "ready inside-the-task\n"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0 and not os.path.exists(file)
    await until(lambda: not service_kernels(service), what="the kernel to be shut down")
    await end(api, service, wf, alice)


async def test_a_notebook_on_a_held_task_gets_its_spare_kernel(
    api, service, pat, jp_fetch, jp_ws_fetch, jp_http_port, jp_base_url
):
    """The kernel started ahead (spares.py) is the one Jupyter's kernel API gives, and the one
    a remote `Client.attach` gets (through the osmo API's kernels route): its key is the
    spare's own, which the server's kernel manager takes, and the owner check still holds."""
    alice, bob = await pat("alice"), await pat("bob")
    main = "  - name: main\n"
    spec = long_spec(name="ahead", cmd="true").replace(main, main + "    interactive: true\n")
    wf = (await api("POST", "workflows", body={"spec": spec}, headers=alice, status=201))["id"]

    async def spare_pid() -> int:
        def ready() -> int:
            return next((p for (w, _, _), p in service.kernel_spares.ready().items() if w == wf), 0)

        return int(await until(ready, timeout=30, what="a spare kernel"))

    spare = await spare_pid()
    body = {"name": spec_name(wf, "main")}
    with pytest.raises(HTTPClientError) as refused:
        await jp_fetch("api", "kernels", method="POST", headers=bob, body=json.dumps(body))
    assert refused.value.code == 403
    assert service.kernel_spares.ready()  # a refused user took nothing

    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    said = await asyncio.to_thread(attach_and_run, url, alice, wf, "import os; print(os.getpid())")
    assert said == (f"{spare}\n", "ok")

    spare = await spare_pid()  # the next one
    kernel = await jp(jp_fetch, "POST", "api", "kernels", headers=alice, body=body)
    ch = await Channels.open(jp_ws_fetch, kernel["id"], alice)
    out, reply = await ch.execute("import os; print(os.getpid()); " + WHERE)
    assert (out, reply["status"]) == (f"{spare}\nready inside-the-task\n", "ok")
    # a restart is a new kernel, signed with the key the manager took from the spare
    await jp(jp_fetch, "POST", "api", "kernels", kernel["id"], "restart", headers=alice)
    ch = await Channels.open(jp_ws_fetch, kernel["id"], alice)
    out, _ = await ch.execute(f"import os; print(os.getpid() != {spare})")
    assert out == "True\n"
    await end(api, service, wf, alice)
