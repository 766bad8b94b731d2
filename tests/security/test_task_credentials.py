"""No task or kernel holds a credential it was not given (issue 14, point 2), played as a hostile
user against a real headless server (PATs are OSMO users, the server's token is the admin):

- the server's environment has no token; the agent it spawns and every task start from a
  scrubbed environment (no server token, no Jupyter variable, no operator SSH agent), while
  what users rely on (PATH, conda, ...) still reaches their tasks;
- a kernel the server starts holds a token of the user who started it (and that user's role),
  which the kernel's `Client()` uses, and which is revoked when the kernel shuts down;
- a credential with allow-lists (`users`, `roles`, `pools`) serves only those (and admins):
  submit refuses, naming the field, a spec naming it or moving data under its url.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any

import pytest

from osmo_core.auth import Principal
from osmo_core.config import OsmoConfig
from osmo_core.errors import ConfigError
from osmo_core.roles import USER
from osmo_core.service import Service
from osmo_jupyter.access import CURRENT_PRINCIPAL
from osmo_jupyter.identity import OsmoIdentityProvider
from tests.interactive.conftest import until
from tests.jupyter.test_handlers import wait_for

PLATFORMS = {"local": {}}
CREDENTIALS = {
    "open": {"token": "open-secret-0001"},
    "alice-only": {"token": "alice-secret-0002", "users": ["alice"]},
    "users-role": {"token": "users-secret-0003", "roles": ["user"]},
    "admins-only": {"token": "admin-secret-0004", "roles": ["admin"]},
    "gpu-only": {"token": "gpupool-secret-0005", "pools": ["gpu"]},
    "bucket": {
        "url": "s3://team-bucket/private",
        "access_key_id": "AKIAEXAMPLE0006",
        "secret_access_key": "bucket-secret-0006",
        "users": ["alice"],
    },
}
# What a hostile environment around the server may hold: none of it may reach a task.
PLANTED = {
    "OSMO_SERVER_TOKEN": "planted-admin-token",
    "JUPYTER_TOKEN": "planted-jupyter-token",
    "JPY_API_TOKEN": "planted-jpy-token",
    "JUPYTERHUB_API_TOKEN": "planted-hub-token",
    "SSH_AUTH_SOCK": "/tmp/planted-ssh-agent.sock",
}
KEPT = {"CONDA_PREFIX": "/opt/conda-of-the-user", "OSMO_TEST_USERS_OWN": "kept"}


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server (in this process) starts with these in its environment."""
    for k, v in {**PLANTED, **KEPT}.items():
        monkeypatch.setenv(k, v)
    return PLANTED


@pytest.fixture
def jp_server_config(osmo_data_dir: Path, task_runs_dir: Path) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"osmo_jupyter": True},
            "identity_provider_class": OsmoIdentityProvider,
        },
        "OsmoConfig": {
            "data_dir": str(osmo_data_dir),
            "backends": {"local": {"kind": "local", "idle_timeout": 60}},
            "task_runs_dir": str(task_runs_dir),  # isolated tasks' folders: a temporary one
            "pools": {
                "local": {"backend": "local", "platforms": PLATFORMS},
                "gpu": {"backend": "local", "platforms": PLATFORMS},
            },
            "credentials": CREDENTIALS,
        },
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def token_of(api: Any) -> Any:
    """`await token_of("bob")` → a personal access token for bob (role user)."""

    async def make(user: str) -> str:
        made = await api("POST", "tokens", body={"name": "test", "user": user}, status=201)
        return str(made["token"])

    return make


def spec(name: str, script: str, extra: str = "", env: dict[str, str] | None = None) -> str:
    environment = "".join(f"\n      {k}: {json.dumps(v)}" for k, v in (env or {}).items())
    return (
        f"workflow:\n  name: {name}\n  tasks:\n  - name: t\n    command: [sh, -c]\n"
        f"    args: [{json.dumps(script)}]\n"
        + (f"    environment:{environment}\n" if environment else "")
        + extra
    )


async def logs(api: Any, wf: str, headers: dict[str, str]) -> str:
    rows = await api("GET", f"workflows/{wf}/tasks/t/logs", headers=headers)
    return "\n".join(r["text"] for r in rows)


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)


def denied_in(env: dict[str, str], ours: tuple[str, ...] = ()) -> list[str]:
    """The control plane's variables in `env`, but those named in `ours`."""
    return sorted(
        k
        for k in env
        if (k in PLANTED or k.startswith(("JUPYTER", "JPY_")) or k == "OSMO_SERVER_TOKEN")
        and k not in ours
    )


# --- the environment: server, agent, tasks ----------------------------------------------------


async def test_a_users_task_gets_no_control_plane_secret_and_cannot_act_as_admin(
    planted, api, token_of, jp_serverapp, jp_http_port, service
):
    assert "OSMO_SERVER_TOKEN" not in os.environ  # the server's own environment is clean
    admin_token = jp_serverapp.identity_provider.token
    bob = bearer(await token_of("bob"))
    url = f"http://127.0.0.1:{jp_http_port}/osmo/api/v1"
    # The hostile task: print its environment, then try every token it can find as the admin.
    script = (
        'env; for t in "$OSMO_SERVER_TOKEN" "$JUPYTER_TOKEN" "$JPY_API_TOKEN"; do '
        'python3 -c "import sys, urllib.request as u; '
        'r = u.Request(sys.argv[1] + \'/tokens\', data=b\'{\\"name\\": \\"x\\", '
        "\\\"role\\\": \\\"admin\\\"}', headers={'Authorization': 'Bearer ' + sys.argv[2]}); "
        'print(\'ADMIN-TOKEN-MADE\', u.urlopen(r).status)" "$API" "$t" '
        "2>/dev/null || echo refused; done"
    )
    body = {"spec": spec("env-dump", script, env={"API": url})}
    wf = (await api("POST", "workflows", body=body, headers=bob, status=201))["id"]
    done = await wait_for(lambda *a, **k: api(*a, headers=bob, **k), wf, {"COMPLETED", "FAILED"})
    out = await logs(api, wf, bob)
    assert done["status"] == "COMPLETED", out
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and " " not in line)
    assert denied_in(env) == [], out
    assert admin_token not in out and "planted" not in out
    assert "ADMIN-TOKEN-MADE" not in out and out.count("refused") == 3
    # what users rely on on their own machine still reaches their tasks
    assert env["CONDA_PREFIX"] == KEPT["CONDA_PREFIX"] and env["OSMO_TEST_USERS_OWN"] == "kept"
    assert env["PATH"] == os.environ["PATH"]
    assert env["OSMO_WORKFLOW_ID"] == wf
    # the agent itself never received them (its process environment, as the kernel keeps it)
    pid = int((service.backends["local"].root / "agent.pid").read_text())
    agent_env = environ_of(pid)
    assert denied_in(agent_env) == [] and agent_env["CONDA_PREFIX"] == KEPT["CONDA_PREFIX"]
    assert admin_token not in Path(f"/proc/{pid}/environ").read_text(errors="replace")
    # a user's token made by that task? none was: bob has only his own
    mine = await api("GET", "tokens", headers=bob)
    assert [t["role"] for t in mine] == ["user"]


def test_the_scrub_is_one_deny_list():
    from osmo_core.agent.environment import scrub, scrubbed

    env = {**PLANTED, **KEPT, "PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "0", "PGPASSWORD": "x"}
    env |= {"OSMO_STORE_URL": "postgresql://u:pw@db/osmo", "JUPYTER_RUNTIME_DIR": "/r"}
    assert scrubbed(env) == {**KEPT, "PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "0"}
    scrub(env)  # in place, as the agent does at start
    assert env == {**KEPT, "PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "0"}


def test_no_pod_gets_the_server_token_nor_an_api_credential(planted):
    """A pod's environment is the request's (the spec's and OSMO_*), never the server's; and
    it mounts no service-account token unless a pod template asks for one."""
    from osmo_core.backends.kubernetes.agent import agent_settings
    from osmo_core.backends.kubernetes.pods import build_pod
    from osmo_core.wire import LaunchRequest

    req = LaunchRequest(key="wf-1/t/0", argv=["env"], env={"OSMO_WORKFLOW_ID": "wf-1"})
    agent = agent_settings({"agent_image": "osmo-agent:1"})
    assert agent is not None
    for pod in (
        build_pod(req, "osmo", {}),
        build_pod(req, "osmo", {}, agent={**agent, "key": "k"}),
    ):
        text = json.dumps(pod)
        assert not [v for v in PLANTED.values() if v in text] and "OSMO_SERVER" not in text
        assert pod["spec"]["automountServiceAccountToken"] is False
    opted = build_pod(req, "osmo", {"pod_template": {"automountServiceAccountToken": True}})
    assert opted["spec"]["automountServiceAccountToken"] is True


async def test_a_terminal_of_the_server_has_no_token(planted, jp_fetch, jp_serverapp, osmo):
    """jupyter_server's terminals start from the server's environment: no token is there."""
    r = await jp_fetch("api", "terminals", method="POST", body="{}")
    name = json.loads(r.body)["name"]
    try:
        manager = jp_serverapp.web_app.settings["terminal_manager"]
        env = environ_of(manager.get_terminal(name).ptyproc.pid)
        assert "OSMO_SERVER_TOKEN" not in env
        assert jp_serverapp.identity_provider.token not in json.dumps(env)
    finally:
        await jp_fetch("api", "terminals", name, method="DELETE")


# --- kernels the server starts ----------------------------------------------------------------


async def _kernel_env(jp_serverapp: Any, kernel_id: str) -> dict[str, str]:
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    await until(lambda: km.provisioner and km.provisioner.process, what="the kernel process")
    return environ_of(km.provisioner.process.pid)


async def _run_in_kernel(jp_serverapp: Any, kernel_id: str, code: str) -> str:
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    kc = km.client()
    kc.start_channels()
    out: list[str] = []
    try:
        await kc.wait_for_ready(timeout=60)
        reply = await kc.execute_interactive(
            code, timeout=60, output_hook=lambda m: out.append(m["content"].get("text", ""))
        )
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
    return "".join(out)


async def test_a_kernel_holds_a_token_of_its_starter_not_the_admins(
    planted, api, jp_fetch, jp_serverapp, service
):
    admin_token = jp_serverapp.identity_provider.token
    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(r.body)["id"]
    env = await _kernel_env(jp_serverapp, kernel_id)
    token = env["OSMO_SERVER_TOKEN"]
    assert token.startswith("osmo_") and token != admin_token
    assert env["OSMO_SERVER_URL"].startswith("http://127.0.0.1:")
    # the owner (an admin) gets a token that is theirs, with their role, and expires
    assert await api("GET", "me", headers=bearer(token)) == {
        "name": getpass.getuser(),
        "role": "admin",
        "via": "token",
    }
    row = next(t for t in await api("GET", "tokens") if t["name"] == f"kernel {kernel_id}")
    hours = service.config.kernel_token_hours
    assert row["expires_at"] == pytest.approx(row["created_at"] + hours * 3600)
    # the notebook's Client() and magics find the server with it
    out = await _run_in_kernel(
        jp_serverapp,
        kernel_id,
        "from osmo_jupyter import Client\nprint(Client().transport.request('GET', 'me'))\n"
        "print('osmo' in get_ipython().magics_manager.magics['line'])",
    )
    assert f"'name': '{getpass.getuser()}'" in out and out.split()[-1] == "True", out
    # shut down: the token is revoked
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    err = await api("GET", "me", headers=bearer(token), status=401)
    assert "revoked" in err["message"]


async def test_a_users_kernel_acts_as_that_user(planted, api, jp_serverapp, service):
    """A kernel started for bob (the principal of his request) holds bob's token: his name and
    role, nothing of the admin's, nor the server's other secrets."""
    km = jp_serverapp.kernel_manager
    reset = CURRENT_PRINCIPAL.set(Principal("bob", USER, via="token"))
    try:
        kernel_id = await km.start_kernel(kernel_name="python3")
    finally:
        CURRENT_PRINCIPAL.reset(reset)
    try:
        env = await _kernel_env(jp_serverapp, kernel_id)
        token = env.pop("OSMO_SERVER_TOKEN")
        # (jupyter_client's own for its kernel: the parent it watches, the notebook's path)
        assert denied_in(env, ours=("JPY_PARENT_PID", "JPY_SESSION_NAME")) == []
        assert env["CONDA_PREFIX"] == KEPT["CONDA_PREFIX"]
        assert jp_serverapp.identity_provider.token not in json.dumps(env)
        bob = bearer(token)
        me = await api("GET", "me", headers=bob)
        assert me == {"name": "bob", "role": "user", "via": "token"}
        body = {"name": "escalate", "role": "admin"}
        await api("POST", "tokens", body=body, headers=bob, status=403)
        await api("GET", "workflows", params={"user": "alice"}, headers=bob, status=403)
        # a restart (by the admin: no request principal here) renews bob's token: still bob's
        await km.restart_kernel(kernel_id)
        renewed = (await _kernel_env(jp_serverapp, kernel_id))["OSMO_SERVER_TOKEN"]
        assert renewed != token
        await api("GET", "me", headers=bob, status=401)  # the old one is revoked
        me = await api("GET", "me", headers=bearer(renewed))
        assert me == {"name": "bob", "role": "user", "via": "token"}
    finally:
        await km.shutdown_kernel(kernel_id)
    await api("GET", "me", headers=bearer(renewed), status=401)


# --- credentials name who may use them --------------------------------------------------------


def _asks(name: str, var: str = "TOK", key: str = "token") -> str:
    return f"    credentials:\n      {name}:\n        {var}: {key}\n"


async def _submit(api: Any, headers: dict[str, str], text: str, status: int, **body: Any) -> Any:
    body = {"spec": text, **body}
    return await api("POST", "workflows", body=body, headers=headers, status=status)


async def test_a_credential_with_allow_lists_refuses_everyone_else(api, token_of, service):
    bob, alice = bearer(await token_of("bob")), bearer(await token_of("alice"))
    before = len(service.list(limit=1000))
    # a credential named in `credentials:`: refused, naming the field and its line
    for body in ({}, {"validation_only": True}, {"dry_run": True}):
        err = await _submit(api, bob, spec("steal", "true", _asks("alice-only")), 403, **body)
        assert err["reason"] == "forbidden"
        assert "workflow.tasks[0].credentials.alice-only" in err["message"]
        (detail,) = err["details"]
        assert detail["field"] == "workflow.tasks[0].credentials.alice-only"
        assert detail["line"] == 8 and "'bob'" in detail["message"]
        assert "alice-secret" not in json.dumps(err)  # the refusal names, never shows
    # by role, by pool: the same rule
    err = await _submit(api, bob, spec("s", "true", _asks("admins-only")), 403)
    assert "role admin" in err["message"]
    err = await _submit(api, bob, spec("s", "true", _asks("gpu-only")), 403, pool="local")
    assert "pool gpu" in err["message"] and "in pool 'local'" in err["message"]
    # data moved under a restricted credential's url: input, output, checkpoint
    inputs = "    inputs:\n    - url: s3://team-bucket/private/raw\n"
    err = await _submit(api, bob, spec("s", "true", inputs), 403)
    assert [d["field"] for d in err["details"]] == ["workflow.tasks[0].inputs[0].url"]
    outputs = "    outputs:\n    - url: s3://team-bucket/private/out\n"
    err = await _submit(api, bob, spec("s", "true", outputs), 403)
    assert [d["field"] for d in err["details"]] == ["workflow.tasks[0].outputs[0].url"]
    # nothing was submitted
    assert len(service.list(limit=1000)) == before
    # outside its prefix, no credential is used: allowed
    other = "    inputs:\n    - url: s3://team-bucket/privateer/raw\n"
    assert (await _submit(api, bob, spec("s", "true", other), 200, validation_only=True))["valid"]
    # the allowed: a listed user runs it (the secret reaches the task), a listed role, a pool
    script = 'test "$TOK" = alice-secret-0002 && echo has-it'
    wf = (await _submit(api, alice, spec("mine", script, _asks("alice-only")), 201))["id"]
    done = await wait_for(lambda *a, **k: api(*a, headers=alice, **k), wf, {"COMPLETED", "FAILED"})
    assert done["status"] == "COMPLETED" and "has-it" in await logs(api, wf, alice)
    for name, pool in (("users-role", "local"), ("gpu-only", "gpu"), ("open", "local")):
        text = spec("ok", "true", _asks(name))
        assert (await _submit(api, bob, text, 200, validation_only=True, pool=pool))["valid"]
    assert await _submit(api, alice, spec("s", "true", inputs), 200, validation_only=True)
    # admins: always
    for name in ("alice-only", "admins-only", "gpu-only"):
        await _submit(api, {}, spec("adm", "true", _asks(name)), 200, validation_only=True)
    await _submit(api, {}, spec("adm", "true", outputs), 200, validation_only=True)


async def test_a_restart_checks_the_allow_lists_of_today(api, token_of, service):
    """A workflow submitted while a credential was open to bob is not restarted once it is not."""
    bob = bearer(await token_of("bob"))
    wf = (await _submit(api, bob, spec("again", "true", _asks("users-role")), 201))["id"]
    await wait_for(lambda *a, **k: api(*a, headers=bob, **k), wf, {"COMPLETED"})
    service.config.credentials = {**CREDENTIALS, "users-role": {"token": "x", "roles": ["admin"]}}
    err = await api("POST", f"workflows/{wf}/restart", headers=bob, status=403)
    assert [d["field"] for d in err["details"]] == ["workflow.tasks[0].credentials.users-role"]
    assert (await api("POST", f"workflows/{wf}/restart", status=201))["restarted"] == wf


async def test_the_allow_lists_stay_on_the_server(api, service):
    """The agent's credentials file has the secrets it needs, not who may use them."""
    path = service.backends["local"].root / "credentials.json"
    await until(path.exists, what="the credentials file")
    written = json.loads(path.read_text())
    assert written["alice-only"] == {"token": "alice-secret-0002"}
    assert "pools" not in written["gpu-only"] and "users" not in written["bucket"]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"token": "t", "users": "alice"}, "OsmoConfig.credentials.c.users"),
        ({"token": "t", "roles": ["root"]}, "OsmoConfig.credentials.c.roles"),
        ({"token": "t", "pools": [1]}, "OsmoConfig.credentials.c.pools"),
        ({"token": "t", "pools": ["nope"]}, "OsmoConfig.credentials.c.pools"),
    ],
)
def test_bad_allow_lists_stop_the_server_at_start(tmp_path, entry, field):
    with pytest.raises(ConfigError) as e:
        Service(OsmoConfig(data_dir=str(tmp_path), credentials={"c": entry}))
    assert [p.field for p in e.value.problems] == [field]


def test_kernel_token_hours_must_be_positive(tmp_path):
    with pytest.raises(ConfigError) as e:
        OsmoConfig(data_dir=str(tmp_path), kernel_token_hours=0)
    assert e.value.problems[0].field == "OsmoConfig.kernel_token_hours"


async def test_an_unconfigured_credential_stays_a_422(api, token_of):
    """Unknown names stay a 422 (placement), before any allow-list: nothing to leak."""
    bob = bearer(await token_of("bob"))
    err = await _submit(api, bob, spec("s", "true", _asks("nope")), 422)
    assert err["details"][0]["field"] == "workflow.tasks[0].credentials.nope"


def test_the_owner_of_a_single_user_lab_keeps_a_working_client(tmp_path):
    """`jupyter lab` accepts only its own token: its owner's kernels get that (theirs, an
    admin's) and `Client()` works there as before; the agent it spawns does not get it."""
    import asyncio

    from tests.notebook.conftest import TOKEN, base_env, jupyter
    from tests.notebook.kernels import run_in_server_kernel

    env = base_env(tmp_path)
    code = (
        "import os\nfrom osmo_jupyter import Client\n"
        f"print(os.environ['OSMO_SERVER_TOKEN'] == {TOKEN!r})\n"
        "print(Client().transport.request('GET', 'me')['role'])\n"
        "print(Client().submit('workflow: {name: lab-env, tasks: [{name: t, command: [env]}]}')"
        ".wait(timeout=60))\n"
    )
    with jupyter("lab", tmp_path, env) as url:
        out = asyncio.run(run_in_server_kernel(url, TOKEN, code, timeout=90))
        agent = int((Path(env["OSMO_HOME"]) / "agent.pid").read_text())
        assert TOKEN not in Path(f"/proc/{agent}/environ").read_text(errors="replace")
    assert out.split() == ["True", "admin", "COMPLETED"], out


def test_a_template_token_never_reaches_a_restricted_credential_unchecked():
    from osmo_core.data.credentials import match_resolved

    creds = {
        "team": {"url": "s3://b", "secret_access_key": "s", "access_key_id": "k"},
        "private": {"url": "s3://b/localhost", "users": ["alice"]},
        "open-deeper": {"url": "s3://b/wf-1"},
    }
    # written with a token, resolved under the restricted prefix: submit checked `team`, not it
    assert match_resolved(creds, "s3://b/{{host:t}}/x", "s3://b/localhost/x") is None
    # written under it already (submit checked it for this user), or open: as `match`
    assert match_resolved(creds, "s3://b/localhost/{{workflow_id}}", "s3://b/localhost/wf-1") == (
        "private"
    )
    assert match_resolved(creds, "s3://b/{{workflow_id}}/x", "s3://b/wf-1/x") == "open-deeper"
    assert match_resolved(creds, "s3://b/{{workflow_id}}", "s3://b/wf-2") == "team"


async def test_bob_cannot_reach_a_restricted_prefix_through_a_template(
    api, token_of, service, tmp_path
):
    """`{{host:t}}` resolves to `localhost` at launch: the credential of that prefix (alice's)
    is not handed to bob's transfer; submit had checked the URL as written."""
    data = tmp_path / "data"
    (data / "localhost").mkdir(parents=True)
    (data / "localhost" / "f.txt").write_text("x")
    service.config.credentials = {
        **CREDENTIALS,
        "folder": {
            "url": f"file://{data}/localhost",
            "token": "folder-secret-9",
            "users": ["alice"],
        },
    }
    bob = bearer(await token_of("bob"))
    inputs = f"    inputs:\n    - url: file://{data}/{{{{host:t}}}}\n"
    wf = (await _submit(api, bob, spec("tmpl", "ls", inputs), 201))["id"]
    await wait_for(lambda *a, **k: api(*a, headers=bob, **k), wf, {"COMPLETED", "FAILED"})
    root = service.backends["local"].root
    (record,) = (root / "runs").glob(f"{wf}/t/*/attempt.json")
    (given,) = json.loads(record.read_text())["request"]["inputs"]
    assert given["url"] == f"file://{data}/localhost" and given.get("credential") is None
