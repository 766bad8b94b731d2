"""Jupyter's own surfaces follow OSMO's roles (issue 14, points 1 and 7): a `user` personal access
token on a headless team server reaches the OSMO API and the kernels of its own tasks, nothing of
the server itself; the server's token (its owner, an admin) keeps everything. Real server, real
agent, real kernels in real tasks, over HTTP and WebSocket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse

from osmo_jupyter._attach import spec_name
from tests.interactive.conftest import until
from tests.interactive.jupyter.conftest import start_task
from tests.interactive.jupyter.test_remote_kernel import WHERE, Channels, end

EXTENSIONS = {"osmo_jupyter": True, "jupyterlab": True, "jupyter_server_terminals": True}
PLATFORMS = {"local": {}}


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    """`jupyter osmo`'s server, with JupyterLab and terminals loaded as a team would have them,
    and a pool open to carol only."""
    jp_server_config["ServerApp"]["jpserver_extensions"] = EXTENSIONS
    jp_server_config["OsmoConfig"]["pools"] = {
        "local": {"backend": "local", "platforms": PLATFORMS},
        "gpu": {"backend": "local", "platforms": PLATFORMS, "users": ["carol"]},
    }
    # A kernel inside a task runs the server's Python (ipykernel), under /root (0700) here:
    # out of reach of a task isolated as its user's uid (test_task_isolation.py's subject).
    jp_server_config["OsmoConfig"]["task_isolation"] = "none"
    return jp_server_config


@pytest.fixture
def call(jp_fetch: Any) -> Any:
    """`await call("POST", "api/kernels", headers, body)` → the response, whatever its status."""

    async def fetch(method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b"{}"
        try:
            return await jp_fetch(
                *path.split("/"), method=method, body=body, headers=headers, follow_redirects=False
            )
        except HTTPClientError as e:
            assert e.response is not None, e
            return e.response

    return fetch


@pytest.fixture
def bare(jp_http_port: int, jp_base_url: str) -> Any:
    """Requests exactly as given: no credentials added (jp_fetch always adds the server's)."""

    async def fetch(method: str, path: str, headers: dict[str, str] | None = None) -> HTTPResponse:
        url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}{path}"
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        return await AsyncHTTPClient().fetch(
            url, method=method, body=body, headers=headers or {},
            raise_error=False, follow_redirects=False,
        )  # fmt: skip

    return fetch


def refused(resp: HTTPResponse, statuses: tuple[int, ...] = (403,)) -> dict[str, Any]:
    """The JSON error body of a refusal with one of `statuses`."""
    assert resp.code in statuses, (resp.code, resp.request.method, resp.request.url, resp.body)
    if "/kernelspecs/" in resp.request.url:  # a static file route: jupyter_server's HTML page
        return {}
    assert resp.headers["Content-Type"].startswith("application/json"), resp.request.url
    body = json.loads(resp.body)
    assert body["message"], body
    return body  # type: ignore[no-any-return]


PY3 = {"name": "python3"}
# (method, path, body): the server's own surfaces, none of which is a user's
SERVER_SURFACES: list[tuple[str, str, Any]] = [
    ("POST", "api/terminals", None),
    ("GET", "api/terminals", None),
    ("GET", "api/contents", None),
    ("GET", "api/contents/secret.txt", None),
    ("PUT", "api/contents/planted.txt", {"type": "file", "format": "text", "content": "x"}),
    ("POST", "api/contents", {"type": "file"}),
    ("GET", "files/secret.txt", None),
    ("GET", "api/config/notebook", None),
    ("PATCH", "api/config/notebook", {"planted": True}),
    ("GET", "lab/api/workspaces", None),
    ("PUT", "lab/api/workspaces/planted", {"data": {}, "metadata": {"id": "planted"}}),
    ("GET", "lab/api/settings", None),
    ("PUT", "lab/api/settings/@jupyterlab/apputils-extension:themes", {"raw": "{}"}),
    ("GET", "lab", None),
    ("GET", "api/nbconvert", None),
    ("GET", "api/status", None),
    ("POST", "api/events", {"schema_id": "x", "version": 1, "data": {}}),
    ("GET", "api/kernels", None),
    ("GET", "api/sessions", None),
    ("POST", "api/kernels", {"name": "python3"}),
    ("POST", "api/kernels", {}),
    ("POST", "api/sessions", {"path": "n.ipynb", "type": "notebook", "kernel": PY3}),
    ("GET", "api/kernelspecs/python3", None),
    ("GET", "kernelspecs/python3/logo-64x64.png", None),
    ("POST", "api/shutdown", None),
]


async def test_a_user_reaches_none_of_the_servers_own_surfaces(
    call, jp_fetch, pat, osmo, jp_root_dir: Path, jp_serverapp
):
    (jp_root_dir / "secret.txt").write_text("the owner's")
    bob = await pat("bob")
    for method, path, body in SERVER_SURFACES:
        refused(await call(method, path, bob, body), (403, 404))
    # nothing happened: no terminal, no file, no kernel, no setting; the server still runs
    assert not (jp_root_dir / "planted.txt").exists()
    assert jp_serverapp.kernel_manager.list_kernel_ids() == []
    assert json.loads((await call("GET", "api/terminals", {})).body) == []
    assert "planted" not in json.loads((await call("GET", "api/config/notebook", {})).body)
    # `/api/me` answers a user (who they are, and what they may use)
    me = await call("GET", "api/me", bob)
    assert me.code == 200
    perms = {"kernels": ["execute"], "contents": ["read"], "terminals": ["execute"]}
    me = await jp_fetch("api", "me", params={"permissions": json.dumps(perms)}, headers=bob)
    got = json.loads(me.body)["permissions"]
    assert {k: got[k] for k in perms} == {"kernels": ["execute"], "contents": [], "terminals": []}


async def test_the_admin_keeps_every_surface(call, osmo, jp_root_dir: Path, jp_serverapp):
    (jp_root_dir / "secret.txt").write_text("the owner's")
    admin: dict[str, str] = {}  # the server's token
    for method, path, body in SERVER_SURFACES:
        if path == "api/shutdown":
            continue  # it would work
        resp = await call(method, path, admin, body)
        # authorized: the handler itself answered (a made-up event schema is its 400)
        assert resp.code < 400 or path == "api/events", (method, path, resp.code, resp.body)
        assert resp.code not in (401, 403), (method, path, resp.code, resp.body)
    assert (jp_root_dir / "planted.txt").read_text() == "x"
    for kernel_id in jp_serverapp.kernel_manager.list_kernel_ids():
        await jp_serverapp.kernel_manager.shutdown_kernel(kernel_id)
    for term in json.loads((await call("GET", "api/terminals", admin)).body):
        await call("DELETE", f"api/terminals/{term['name']}", admin)


async def test_a_users_own_task_kernel_works_and_no_other(
    api, service, pat, call, jp_ws_fetch, jp_serverapp
):
    alice, bob = await pat("alice"), await pat("bob")
    wf = await start_task(api, service, alice)
    name = spec_name(wf, "main")
    specs = lambda resp: set(json.loads(resp.body)["kernelspecs"])  # noqa: E731
    assert specs(await call("GET", "api/kernelspecs", alice)) == {name}  # not python3
    assert specs(await call("GET", "api/kernelspecs", bob)) == set()
    assert {name, "python3"} <= specs(await call("GET", "api/kernelspecs", {}))
    assert (await call("GET", f"api/kernelspecs/{name}", alice)).code == 200
    refused(await call("GET", f"api/kernelspecs/{name}", bob))

    # alice's own task kernel, end to end: start, channels, interrupt, a session around it
    made = json.loads((await call("POST", "api/kernels", alice, {"name": name})).body)
    kid = made["id"]
    ch = await Channels.open(jp_ws_fetch, kid, alice)
    out, reply = await ch.execute(WHERE)
    assert (out, reply["status"]) == ("ready inside-the-task\n", "ok")
    assert (await call("GET", f"api/kernels/{kid}", alice)).code == 200
    assert (await call("POST", f"api/kernels/{kid}/interrupt", alice)).code == 204
    body = {"path": "alice.ipynb", "type": "notebook", "kernel": {"id": kid}}
    session = json.loads((await call("POST", "api/sessions", alice, body)).body)
    assert session["kernel"]["id"] == kid
    assert (await call("GET", f"api/sessions/{session['id']}", alice)).code == 200
    # listings would name everyone's kernels: refused to users, the admin's are complete
    refused(await call("GET", "api/kernels", alice))
    refused(await call("GET", "api/sessions", alice))
    assert kid in {k["id"] for k in json.loads((await call("GET", "api/kernels", {})).body)}

    # bob, with a task of his own, gets nowhere near alice's kernel
    wf_bob = await start_task(api, service, bob, name="bobs")
    bobs = spec_name(wf_bob, "main")
    for method, path, body in [
        ("GET", f"api/kernels/{kid}", None),
        ("POST", f"api/kernels/{kid}/interrupt", None),
        ("POST", f"api/kernels/{kid}/restart", None),
        ("DELETE", f"api/kernels/{kid}", None),
        ("POST", "api/kernels", {"name": name}),
        ("POST", "api/kernels", {"name": bobs, "kernel_id": kid}),  # "start" alice's kernel
        ("GET", f"api/sessions/{session['id']}", None),
        ("PATCH", f"api/sessions/{session['id']}", {"kernel": {"name": bobs}}),
        ("DELETE", f"api/sessions/{session['id']}", None),
        ("POST", "api/sessions", {"path": "b.ipynb", "type": "notebook", "kernel": {"id": kid}}),
        # the path of alice's session would hand her session over
        ("POST", "api/sessions", {"path": "alice.ipynb", "type": "notebook",
                                  "kernel": {"name": bobs}}),
    ]:  # fmt: skip
        refused(await call(method, path, bob, body))
    with pytest.raises(HTTPClientError) as e:
        await jp_ws_fetch("api", "kernels", kid, "channels", headers=bob)
    assert e.value.code == 403
    # a kernel id nobody has is jupyter_server's 404 (ids are random: this reveals nothing)
    refused(await call("GET", "api/kernels/00000000-0000-0000-0000-000000000000", bob), (404,))
    unknown = {"path": "c.ipynb", "type": "notebook", "kernel": {"id": "0-0-0-0-0"}}
    refused(await call("POST", "api/sessions", bob, unknown))  # would start python3
    # his own kernel may not be switched onto hers
    mine = json.loads((await call("POST", "api/kernels", bob, {"name": bobs})).body)["id"]
    body = {"path": "bob.ipynb", "type": "notebook", "kernel": {"id": mine}}
    bob_session = json.loads((await call("POST", "api/sessions", bob, body)).body)
    patch = {"kernel": {"id": kid}}
    refused(await call("PATCH", f"api/sessions/{bob_session['id']}", bob, patch))
    out, _ = await ch.execute("print('still hers')")
    assert out == "still hers\n"

    assert (await call("DELETE", f"api/sessions/{session['id']}", alice)).code == 204
    assert (await call("DELETE", f"api/sessions/{bob_session['id']}", bob)).code == 204
    await until(lambda: not jp_serverapp.kernel_manager.list_kernel_ids(), what="kernels gone")
    await end(api, service, wf, alice)
    await end(api, service, wf_bob, bob)


OSMO_AND_JUPYTER = ["osmo/api/v1/workflows", "osmo/api/v1/me", "api/kernels", "api/contents"]
BAD_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer osmo_000000000000_" + "x" * 40},
    {"Authorization": "token not-the-servers"},
    {"Authorization": "Bearer"},
]


async def test_no_or_bad_credentials_get_401_with_a_challenge_everywhere(bare, osmo, call):
    for headers in BAD_CREDENTIALS:
        for path in OSMO_AND_JUPYTER:
            for method in ("GET", "POST", "DELETE"):
                # a POST without credentials is a 401, not a complaint about an XSRF cookie
                body = refused(await bare(method, path, headers), (401,))
                assert "_xsrf" not in body["message"]
    resp = await bare("POST", "api/terminals")
    assert refused(resp, (401,))["message"].startswith("authentication required")
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="osmo"'
    for resp in [await bare("GET", "metrics"), await bare("GET", "osmo/api/v1/workflows")]:
        refused(resp, (401,))
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # WebSockets are refused at the handshake alike
    for path in ("api/kernels/0-0-0-0-0/channels", "osmo/api/v1/events", "api/events/subscribe"):
        resp = await bare("GET", path, {"Connection": "Upgrade", "Upgrade": "websocket"})
        assert resp.code == 401, (path, resp.code, resp.body)
    # what a browser opens without credentials still goes to the login page
    resp = await bare("GET", "lab")
    assert resp.code == 302 and "/login" in resp.headers["Location"]
    # and a cookie (not a token) still needs its XSRF token to change anything
    cookie = (await call("GET", "api/status", {})).headers.get_list("Set-Cookie")
    jar = "; ".join(c.split(";", 1)[0] for c in cookie)
    assert jar, "token authentication sets the login cookie"
    assert (await bare("GET", "api/status", {"Cookie": jar})).code == 200
    body = refused(await bare("POST", "api/contents", {"Cookie": jar}), (403,))
    assert "_xsrf" in body["message"]


async def test_metrics_are_for_admins(call, bare, pat, osmo):
    bob = await pat("bob")
    assert "admins" in refused(await call("GET", "metrics", bob))["message"]
    resp = await call("GET", "metrics", {})
    assert resp.code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    assert b"osmo_workflows" in resp.body
    admin = await call("POST", "osmo/api/v1/tokens", {}, {"name": "prom", "role": "admin"})
    token = json.loads(admin.body)["token"]
    resp = await bare("GET", "metrics", {"Authorization": f"Bearer {token}"})
    assert resp.code == 200 and b"osmo_workflows" in resp.body


async def test_resources_name_only_the_pools_a_user_may_use(api, pat):
    alice, carol = await pat("alice"), await pat("carol")
    assert [r["pools"] for r in await api("GET", "resources", headers=alice)] == [["local"]]
    assert [r["pools"] for r in await api("GET", "resources", headers=carol)] == [["gpu", "local"]]
    assert [r["pools"] for r in await api("GET", "resources")] == [["gpu", "local"]]


def _headless_contents(env: dict[str, str], *flags: str) -> tuple[int, int]:
    """`jupyter osmo` with `flags`: (a user's, the admin's) status on GET /api/contents."""
    from tests.conftest import free_port
    from tests.jupyter.test_headless import call as admin_call
    from tests.jupyter.test_headless import jupyter_osmo, start_server

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(env, port, jupyter_osmo(*flags))
    try:
        _, made = admin_call(f"{base}/osmo/api/v1/tokens", {"name": "t", "user": "bob"})
        return admin_call(f"{base}/api/contents", token=made["token"])[0], admin_call(
            f"{base}/api/contents"
        )[0]
    finally:
        proc.terminate()
        proc.wait(20)


def test_jupyter_osmo_installs_the_authorizer_unless_the_admin_chose_one(osmo_env):
    assert _headless_contents(osmo_env) == (403, 200)
    allow_all = "--ServerApp.authorizer_class=jupyter_server.auth.authorizer.AllowAllAuthorizer"
    assert _headless_contents(osmo_env, allow_all) == (200, 200)
