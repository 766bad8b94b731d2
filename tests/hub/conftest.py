"""A real JupyterHub on loopback (from PyPI; its proxy, configurable-http-proxy, from npm) with
the control plane as its service, started from docs/jupyterhub_config.py, and users' Labs in
client mode. Skipped, saying why, when jupyterhub or configurable-http-proxy is missing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
CHP = shutil.which("configurable-http-proxy") or str(
    REPO / ".ci/chp/node_modules/.bin/configurable-http-proxy"
)
PASSWORD = "hub-test-password"
SERVICE_TOKEN = "osmo-service-token-for-tests"
TESTER_TOKEN = "hub-tester-token-for-tests"
OWNER_TOKEN = "osmo-owner-token-for-tests"
USERS = ("alice", "bob", "carol")  # the users with a Lab; dave has none
STARTUP = 90.0  # a Lab starts in seconds; a loaded CI machine needs more
SLEEPER = "workflow:\n  name: {name}\n  tasks:\n  - name: t\n    command: [sleep, '600']\n"

try:
    import jupyterhub  # noqa: F401
except ImportError:
    pytest.skip("jupyterhub is not installed (pip install -e '.[hub]')", allow_module_level=True)
if not os.access(CHP, os.X_OK):
    pytest.skip(
        "configurable-http-proxy is not installed (.ci/run puts it in .ci/chp)",
        allow_module_level=True,
    )


def call(url: str, token: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """(status, decoded JSON answer) of one request with `Authorization: token ...`."""
    req = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def wait_until(what: str, check: Any, timeout: float = STARTUP) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.25)


@dataclass
class Hub:
    tmp: Path
    port: int
    service_port: int
    managed: bool = False  # the Hub starts the service itself (its `command`)
    tokens: dict[str, str] = field(default_factory=dict)
    service: subprocess.Popen[bytes] | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def service_url(self) -> str:
        """The service directly (as the Labs reach it)."""
        return f"http://127.0.0.1:{self.service_port}/services/osmo"

    def lab(self, user: str) -> str:
        """The user's Lab, through the Hub's proxy."""
        return f"{self.url}/user/{user}"

    def hub_api(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        return call(f"{self.url}/hub/api/{path}", TESTER_TOKEN, method, body)

    def token(self, user: str, scopes: list[str] | None = None) -> str:
        """A Hub API token of `user` (all of the user's own scopes unless `scopes`)."""
        body: dict[str, Any] = {"note": "tests"} if scopes is None else {"scopes": scopes}
        status, made = self.hub_api(f"users/{user}/tokens", "POST", body)
        assert status == 201, made
        return str(made["token"])

    def stop(self) -> None:
        """The Hub stopped: its proxy, the Labs (`cleanup_servers`) and a managed service go
        with it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def start_service(self) -> None:
        env = {
            **os.environ,
            "JUPYTERHUB_SERVICE_NAME": "osmo",
            "JUPYTERHUB_API_TOKEN": SERVICE_TOKEN,
            "JUPYTERHUB_API_URL": f"{self.url}/hub/api",
            "JUPYTERHUB_CLIENT_ID": "service-osmo",
            "JUPYTERHUB_SERVICE_PREFIX": "/services/osmo/",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/osmo/oauth_callback",
            "JUPYTERHUB_BASE_URL": "/",
        }
        env.pop("OSMO_STORE_URL", None)
        self.service = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from osmo_jupyter.app import main; main()",
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                f"--port={self.service_port}",
                "--ServerApp.base_url=/services/osmo/",
                f"--IdentityProvider.token={OWNER_TOKEN}",
                "--OsmoConfig.hub_group_roles={'osmo-admins': 'admin'}",
                *self.service_args,
            ],
            env=env,
            stdout=open(self.tmp / "service.log", "ab"),  # noqa: SIM115 (the process owns it)
            stderr=subprocess.STDOUT,
        )

    @property
    def service_args(self) -> list[str]:
        """What the tests add to the service's command line: as root, with their own data."""
        return [
            "--allow-root",
            f"--OsmoConfig.data_dir={self.tmp / 'osmo'}",
            "--OsmoConfig.task_isolation=none",
        ]

    def wait_service(self) -> None:
        health = f"{self.service_url}/osmo/api/v1/health"
        wait_until("the osmo service", lambda: call(health, "")[0] == 200)

    def stop_service(self) -> None:
        if self.service is not None and self.service.poll() is None:
            self.service.terminate()
            try:
                self.service.wait(30)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait(10)

    def start_labs(self, *users: str) -> None:
        """The users' Labs, started side by side (and beside the service): the Hub answers a
        spawn request only once the spawn is done or 10 s passed, so one thread each."""
        with ThreadPoolExecutor(len(users)) as pool:
            answers = pool.map(lambda u: self.hub_api(f"users/{u}/server", "POST", {}), users)
            for status, body in answers:
                assert status in (201, 202), body
        self.wait_service()

        def ready() -> bool:
            models = [self.hub_api(f"users/{user}")[1] for user in users]
            return all((m.get("servers") or {}).get("", {}).get("ready") for m in models)

        wait_until(f"the Labs of {users}", ready)


HUB_CONFIG = """
c = get_config()  # noqa
load_subconfig({docs!r})
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{tmp}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.pid_file = "{tmp}/proxy.pid"
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.cleanup_servers = True
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allowed_users = {{"alice", "bob", "carol", "dave"}}
c.Authenticator.admin_users = {{"carol"}}
c.JupyterHub.load_groups = {{"osmo-admins": {{"users": ["dave"]}}}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/home/{{username}}"
c.Spawner.args = [
    "--allow-root",
    # this checkout's panel, and the app object for the browser tests' commands
    "--LabApp.extra_labextensions_path={extensions}",
    "--LabApp.expose_app_in_browser=True",
]
c.Spawner.environment["JUPYTERLAB_SETTINGS_DIR"] = "{tmp}/lab-settings"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
osmo = c.JupyterHub.services[0]
if {managed!r}:  # the example's command, with a data folder of the test's and as root
    osmo["command"] = [a for a in osmo["command"] if not a.startswith("--OsmoConfig.data_dir")]
    osmo["command"] += {service_args!r}
else:  # the service runs apart (the tests restart it): the command goes, a token comes
    osmo.pop("command")
    osmo["api_token"] = {service_token!r}
c.JupyterHub.services.append({{"name": "tester", "api_token": {tester_token!r}}})
c.JupyterHub.load_roles.append({{
    "name": "tester",
    "services": ["tester"],
    "scopes": ["admin:users", "admin:servers", "tokens", "read:users", "access:servers"],
}})
"""


@pytest.fixture(scope="package")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("hub")) as h:
        yield h


def submit(hub: Hub, user: str, name: str) -> str:
    """A long task of `user`'s, submitted from their Lab; its id once it runs."""
    lab = f"{hub.lab(user)}/osmo/api/v1"
    body = {"spec": SLEEPER.format(name=name)}
    status, made = call(f"{lab}/workflows", hub.tokens[user], "POST", body)
    assert status == 201, made

    def running() -> bool:
        return call(f"{lab}/workflows/{made['id']}", hub.tokens[user])[1]["status"] == "RUNNING"

    wait_until(f"{made['id']} running", running, 60)
    return str(made["id"])


@pytest.fixture(scope="package")
def workflows(hub: Hub) -> dict[str, str]:
    return {user: submit(hub, user, f"wf-{user}") for user in ("alice", "bob")}


@contextlib.contextmanager
def running_hub(tmp: Path, users: tuple[str, ...] = USERS, managed: bool = False) -> Iterator[Hub]:
    """The Hub, the service and the users' Labs, up; all stopped at the end (also by
    benchmarks/hub.py). `managed`: the Hub starts the service (docs/jupyterhub_config.py's
    `command`) and stops it; else the tests run it as an external service."""
    h = Hub(tmp, free_port(), free_port(), managed=managed)
    extensions = tmp / "labextensions" / "@osmo-jupyter"
    extensions.mkdir(parents=True)
    (extensions / "labextension").symlink_to(REPO / "osmo_jupyter" / "labextension")
    news = tmp / "lab-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no news prompt over the panel
    (tmp / "jupyterhub_config.py").write_text(
        HUB_CONFIG.format(
            docs=str(REPO / "docs/jupyterhub_config.py"),
            port=h.port,
            hub_port=free_port(),
            proxy_api=free_port(),
            tmp=tmp,
            chp=CHP,
            password=PASSWORD,
            service_token=SERVICE_TOKEN,
            tester_token=TESTER_TOKEN,
            extensions=tmp / "labextensions",
            managed=managed,
            service_args=h.service_args,
        )
    )
    env = {**os.environ, "OSMO_SERVICE_PORT": str(h.service_port)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    log = open(tmp / "hub.log", "ab")  # noqa: SIM115 (closed below)
    h.proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # as under systemd, whoever started the tests: a background job's ignored SIGINT would
        # reach the Labs, which the Hub stops with SIGINT (SIGTERM only 30 s later)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        if not managed:
            h.start_service()  # it needs the Hub only once requests come
        wait_until("the Hub", lambda: hub_alive(h) and h.hub_api("")[0] == 200)
        h.start_labs(*users)
        h.tokens = {u: h.token(u) for u in ("alice", "bob", "carol", "dave")}
        yield h
    except BaseException:
        print((tmp / "hub.log").read_text()[-6000:])
        print((tmp / "service.log").read_text()[-6000:] if (tmp / "service.log").exists() else "")
        raise
    finally:
        h.stop()
        h.stop_service()
        log.close()
        _stop_agent(tmp / "osmo")


def hub_alive(h: Hub) -> bool:
    """Fails at once when the Hub exited: its proxy, a process of its own, answers 404 on."""
    assert h.proc is not None
    if h.proc.poll() is not None:
        raise RuntimeError(f"the Hub exited ({h.proc.returncode}); its log follows")
    return True


def _stop_agent(data_dir: Path) -> None:
    """The service's local agent outlives it by design: stopped here."""
    if not (data_dir / "agent.lock").exists():
        return
    from osmo_core.backends.local import LocalBackend

    asyncio.run(LocalBackend("local", {"root": str(data_dir)}).shutdown_agent(force=True))


class KernelChannels:
    """A kernel's channels WebSocket (jupyter_server's JSON protocol): run code, read stdout."""

    def __init__(self, ws: Any):
        self.ws = ws
        self.session = uuid.uuid4().hex

    @classmethod
    async def connect(cls, base: str, token: str, kernel_id: str) -> KernelChannels:
        url = "ws" + base[len("http") :] + f"/api/kernels/{kernel_id}/channels"
        req = HTTPRequest(url, headers={"Authorization": f"token {token}"}, connect_timeout=30)
        return cls(await websocket_connect(req))

    async def execute(self, code: str, timeout: float = 60.0) -> str:
        """The stdout of `code`, once the kernel is idle again; AssertionError on an error."""
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "tests"}
        header.update(session=self.session, date="", version="5.3")
        content = {"code": code, "silent": False, "store_history": False}
        content.update(user_expressions={}, allow_stdin=False)
        msg = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        await self.ws.write_message(json.dumps({**msg, "channel": "shell", "buffers": []}))
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            raw = await asyncio.wait_for(self.ws.read_message(), deadline - time.monotonic())
            assert raw is not None, "the kernel's WebSocket closed"
            reply = json.loads(raw)
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = reply["msg_type"]
            if kind == "stream":
                out.append(reply["content"]["text"])
            elif kind == "error":
                raise AssertionError("\n".join(reply["content"]["traceback"]))
            elif kind == "status" and reply["content"]["execution_state"] == "idle":
                return "".join(out)

    def close(self) -> None:
        self.ws.close()


class TaskTerminal:
    """A task's terminal through the osmo API (terminado's protocol) at `base`."""

    def __init__(self, ws: Any):
        self.ws = ws

    @classmethod
    async def open(cls, base: str, token: str, wf: str, task: str) -> TaskTerminal:
        task_url = f"{base}/osmo/api/v1/workflows/{wf}/tasks/{task}"
        status, made = await asyncio.to_thread(call, f"{task_url}/api/terminals", token, "POST", {})
        assert status == 200, made
        url = "ws" + task_url[len("http") :] + f"/terminals/websocket/{made['name']}"
        req = HTTPRequest(url, headers={"Authorization": f"token {token}"}, connect_timeout=30)
        term = cls(await websocket_connect(req))
        await term.ws.write_message(json.dumps(["setup", {}]))
        return term

    async def until(self, text: str, timeout: float = 30.0) -> str:
        """Output up to `text`."""
        seen = ""
        deadline = time.monotonic() + timeout
        while text not in seen:
            raw = await asyncio.wait_for(self.ws.read_message(), deadline - time.monotonic())
            assert raw is not None, f"the terminal closed; it wrote {seen!r}"
            msg = json.loads(raw)
            if msg[0] == "stdout":
                seen += msg[1]
        return seen

    async def send(self, text: str) -> None:
        await self.ws.write_message(json.dumps(["stdin", text]))

    def close(self) -> None:
        self.ws.close()
