"""A task's web app cannot act as its viewer (issue 14, point 5).

Bob (a `user` PAT) runs a task serving a page whose script tries, with the browser's
credentials, to read `document.cookie`, call `/osmo/api/v1/me` and create an admin token. The
admin logs into the server in a real Chromium and opens the app through the proxy, as the panel
does: the script gets no credential and no token is made — with the default sandbox and with
an app origin of its own. The same script run on the server's origin does get them (so the
test can fail). Plus: the proxied path cannot inject headers (400), and what the app sees and
may send back.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from osmo_jupyter.identity import OsmoIdentityProvider
from tests.conftest import free_port
from tests.interactive.conftest import until
from tests.interactive.jupyter.conftest import start_task
from tests.interactive.jupyter.test_interactive_routes import _bound

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]

# The attack, as bob writes it: API paths from the base URL the proxy tells the app
# (X-Forwarded-Prefix), so it reaches the control plane whatever the server's base URL.
ATTACK = """
async (base) => {
  const r = {};
  try { r.cookie = document.cookie; } catch (e) { r.cookie = 'denied:' + e.name; }
  const xsrf = ((r.cookie || '').match(/_xsrf=([^;]+)/) || [])[1] || '';
  for (const [k, url] of [['me', base + 'osmo/api/v1/me'], ['me_main', MAIN + 'osmo/api/v1/me']]) {
    try {
      const resp = await fetch(url, {credentials: 'include'});
      r[k] = resp.status + ' ' + (await resp.text()).slice(0, 300);
    } catch (e) { r[k] = 'blocked:' + e.name; }
  }
  const body = JSON.stringify({name: 'pwned', user: 'mallory', role: 'admin'});
  for (const [k, url] of [['token', base + 'osmo/api/v1/tokens'],
                          ['token_main', MAIN + 'osmo/api/v1/tokens']]) {
    try {
      const resp = await fetch(url + '?_xsrf=' + xsrf, {method: 'POST', credentials: 'include',
        headers: {'Content-Type': 'application/json', 'X-XSRFToken': xsrf}, body});
      r[k] = resp.status + ' ' + (await resp.text()).slice(0, 300);
    } catch (e) { r[k] = 'blocked:' + e.name; }
    try {  // a "simple" request: no preflight, cookies if the browser sends them
      await fetch(url, {method: 'POST', mode: 'no-cors', credentials: 'include',
        headers: {'Content-Type': 'text/plain'}, body});
    } catch (e) {}
  }
  try {  // the app's own data still loads
    r.own = await (await fetch('data.json')).text();
  } catch (e) { r.own = 'blocked:' + e.name; }
  return r;
}
"""

APP = """
import json, sys
from tornado import ioloop, web, websocket

PORT, MAIN = int(sys.argv[1]), sys.argv[2]
with open(sys.argv[3]) as f:
    ATTACK = f.read()
SEEN = []  # what reached the app: path and headers of every request but /seen


class Page(web.RequestHandler):
    def get(self):
        SEEN.append({"path": self.request.path, "query": self.request.query,
                     "headers": dict(self.request.headers)})
        prefix = self.request.headers.get("X-Forwarded-Prefix", "")
        base = prefix.split("/osmo/", 1)[0] + "/"
        attack = ATTACK.replace("MAIN", json.dumps(MAIN + base))
        self.write("<html><head><title>loading</title></head><body><script>"
                   "(" + attack + ")(" + json.dumps(base) + ").then(r => {"
                   "document.title = 'done ' + JSON.stringify(r); });</script></body></html>")


class Data(web.RequestHandler):
    def get(self):
        self.write({"ok": True})


class Seen(web.RequestHandler):
    def get(self):
        self.write(json.dumps(SEEN))


class Any(web.RequestHandler):
    def check_xsrf_cookie(self): pass
    def get(self, path):
        SEEN.append({"path": self.request.path, "query": self.request.query,
                     "headers": dict(self.request.headers)})
        self.set_header("Set-Cookie", "_xsrf=planted; Path=/")
        self.set_header("Clear-Site-Data", '"cookies"')
        self.set_header("Service-Worker-Allowed", "/")
        self.set_header("X-App", "yes")
        self.write("app")
    post = get


class WS(websocket.WebSocketHandler):
    def check_origin(self, origin): return True
    def open(self):
        SEEN.append({"path": self.request.path, "query": self.request.query,
                     "headers": dict(self.request.headers)})
    def on_message(self, m):
        self.write_message("echo:" + m)


web.Application([("/", Page), ("/data.json", Data), ("/seen", Seen), ("/ws", WS),
                 ("/(.*)", Any)]).listen(PORT, "127.0.0.1")
ioloop.IOLoop.current().start()
"""


# --- the server: the default (sandbox), or an app origin of its own ----------------------------


@pytest.fixture(params=["sandbox", "app-host", "app-per-port"])
def app_mode(request: Any) -> str:
    return str(request.param)


def _app_url(mode: str, port: int) -> str:
    return {
        "sandbox": "",
        "app-host": f"http://localhost:{port}",  # the admin uses 127.0.0.1: another host name
        "app-per-port": f"http://{{app}}.localhost:{port}",  # Chromium: *.localhost is loopback
    }[mode]


@pytest.fixture
def jp_server_config(osmo_data_dir: Path, app_mode: str, jp_http_port: int) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"osmo_jupyter": True},
            "identity_provider_class": OsmoIdentityProvider,
            "allow_remote_access": app_mode == "app-per-port",  # *.localhost: not a local name
        },
        "OsmoConfig": {
            "data_dir": str(osmo_data_dir),
            "backends": {"local": {"kind": "local", "idle_timeout": 60}},
            "app_proxy_url": _app_url(app_mode, jp_http_port),
            # The app runs on the server's Python (tornado), under /root (0700) here: out of
            # reach of a task isolated as its user's uid (test_task_isolation.py's subject).
            "task_isolation": "none",
        },
    }


@pytest.fixture
async def bobs_app(api: Any, service: Any, pat: Any, tmp_path: Path, jp_http_port: int) -> Any:
    """(workflow id, port, bob's headers): bob's task serving APP on a declared port."""
    app, attack = tmp_path / "app.py", tmp_path / "attack.js"
    app.write_text(APP)
    attack.write_text(ATTACK)
    port = free_port()
    bob = await pat("bob")
    main = f"http://127.0.0.1:{jp_http_port}"
    cmd = f"exec {sys.executable} {app} {port} {main} {attack}"
    wf = await start_task(api, service, bob, cmd=cmd, ports=str(port))
    await until(lambda: _bound(port), what="bob's web app")
    return wf, port, bob


def proxy(wf: str, port: int, *path: str) -> tuple[str, ...]:
    return ("osmo", "api", "v1", "workflows", wf, "tasks", "main", "proxy", str(port), *path)


async def seen(jp_fetch: Any, wf: str, port: int, bob: dict[str, str]) -> list[dict[str, Any]]:
    return json.loads((await jp_fetch(*proxy(wf, port, "seen"), headers=bob)).body)  # type: ignore[no-any-return]


# --- the browser: the admin opens bob's app -----------------------------------------------------


async def test_the_apps_script_gets_none_of_the_admins_credentials(
    bobs_app: Any, api: Any, jp_fetch: Any, jp_serverapp: Any, jp_base_url: str, jp_http_port: int,
    app_mode: str,
) -> None:  # fmt: skip
    from playwright.async_api import async_playwright

    wf, port, bob = bobs_app
    main = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    token = jp_serverapp.identity_provider.token
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context()).new_page()
            # The admin logs in (the server's token → Jupyter's login cookie), on a page that
            # also sets Jupyter's _xsrf cookie.
            await page.goto(f"{main}osmo/api/v1/version?token={token}")
            await page.goto(f"{main}login")
            jar = {c["name"]: c["value"] for c in await page.context.cookies()}
            assert "_xsrf" in jar and any(n.startswith("username-") for n in jar), jar

            # Control: the same script on the server's own origin does act as the admin.
            attack = ATTACK.replace("MAIN", json.dumps(main))
            control = await page.evaluate(f"({attack})", jp_base_url)
            control = control if isinstance(control, dict) else {}
            assert "_xsrf=" in control["cookie"], control
            assert control["me"].startswith("200") and '"admin"' in control["me"], control
            assert control["token"].startswith("201"), control
            for made in await api("GET", "tokens"):
                if made["name"] == "pwned":
                    await api("DELETE", f"tokens/{made['id']}")
            before = {t["id"] for t in await api("GET", "tokens")}

            # The admin opens bob's app as the panel does.
            await page.goto(f"{main}{'/'.join(proxy(wf, port))}/")
            await page.wait_for_function("document.title.startsWith('done ')", timeout=20_000)
            got = json.loads((await page.title())[len("done ") :])
            url = urllib.parse.urlsplit(page.url)
        finally:
            await browser.close()

    after = [t for t in await api("GET", "tokens") if t["id"] not in before]
    assert after == [], after  # no token was made
    if app_mode == "sandbox":
        assert got["cookie"].startswith("denied:"), got  # an opaque origin has no cookies
    else:
        assert "_xsrf" not in got["cookie"] and "username" not in got["cookie"], got
    for k in ("me", "me_main", "token", "token_main"):
        # refused, unreadable (blocked), or on an app's own origin the app itself
        assert not got[k].startswith("2") or got[k] == "200 app", (k, got)
        assert "admin" not in got[k], (k, got)
    assert json.loads(got["own"]) == {"ok": True}, got  # the app itself still works
    if app_mode == "app-per-port":  # at the root of its own origin
        assert url.path == "/" and url.hostname.endswith(".localhost"), page.url
    else:
        assert "/osmo/api/v1/apps/" in url.path, page.url
        assert url.hostname == ("127.0.0.1" if app_mode == "sandbox" else "localhost"), page.url
    # Nothing of Jupyter's (nor the app link's cookie) reached bob's app either.
    for req in await seen(jp_fetch, wf, port, bob):
        headers = {k.lower(): v for k, v in req["headers"].items()}
        assert "authorization" not in headers and "osmo-app" not in headers.get("cookie", "")
        assert not any(v in json.dumps(req) for v in jar.values()), req


# --- HTTP: how the proxy answers a browser and what the app sees -------------------------------


@pytest.fixture
def as_browser(jp_serverapp: Any, jp_http_port: int, jp_base_url: str) -> Any:
    """`await as_browser(path parts, method=..., headers=...)`: a request authenticated as a
    browser is (Jupyter's token in the URL, then its cookie), not by an Authorization header;
    redirects are not followed."""

    async def fetch(parts: tuple[str, ...], **kw: Any) -> Any:
        token = jp_serverapp.identity_provider.token
        url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}{'/'.join(parts)}?token={token}"
        return await AsyncHTTPClient().fetch(url, follow_redirects=False, raise_error=False, **kw)

    return fetch


@pytest.mark.parametrize("app_mode", ["sandbox"], indirect=True)
async def test_a_browser_is_sent_to_the_app_link_and_only_by_plain_navigation(
    bobs_app: Any, jp_fetch: Any, as_browser: Any, jp_http_port: int, jp_base_url: str
) -> None:
    wf, port, bob = bobs_app
    resp = await as_browser(proxy(wf, port, "x"))
    assert resp.code == 302
    link = resp.headers["Location"]
    assert "/osmo/api/v1/apps/" in link and link.endswith("/x"), link
    assert "token=" not in link  # the Jupyter token does not travel on

    # Anything but a plain GET/HEAD navigation from here is refused, not proxied.
    refused = [
        {"method": "POST", "body": b"x"},
        {"headers": {"Sec-Fetch-Site": "cross-site"}},
        {"headers": {"Sec-Fetch-Site": "same-site"}},
        {"headers": {"Upgrade": "websocket", "Connection": "Upgrade"}},
    ]
    for kw in refused:
        resp = await as_browser(proxy(wf, port, "x"), **kw)
        assert resp.code == 403, (kw, resp.body)
        assert json.loads(resp.body)["message"]

    # The link works without any Jupyter credential, under the sandbox; what the viewer's
    # browser sends along (Jupyter's cookies, XSRF header) stays here, and the app cannot set
    # cookies on the server's origin, wipe them, or widen a service worker's scope.
    client = AsyncHTTPClient()
    base = f"http://127.0.0.1:{jp_http_port}"
    sent = {"Cookie": "username-x=secret; _xsrf=x; other=1", "X-XSRFToken": "x"}
    got = await client.fetch(f"{base}{link}", headers=sent, raise_error=False)
    assert got.code == 200 and got.body == b"app", got.body
    assert got.headers["Content-Security-Policy"].startswith("sandbox ")
    assert "allow-same-origin" not in got.headers["Content-Security-Policy"]
    assert got.headers["X-App"] == "yes"
    for dropped in ("Set-Cookie", "Clear-Site-Data", "Service-Worker-Allowed"):
        assert dropped not in got.headers, dropped
    last = (await seen(jp_fetch, wf, port, bob))[-1]["headers"]
    lower = {k.lower() for k in last}
    assert {"cookie", "authorization", "x-xsrftoken"}.isdisjoint(lower), last
    # The same for a WebSocket through the link, and through the route programs use (where
    # the app's own cookies pass, Jupyter's do not).
    ws_link = f"ws://127.0.0.1:{jp_http_port}{link.rsplit('/', 1)[0]}/ws"
    ws_prog = f"ws://127.0.0.1:{jp_http_port}{jp_base_url}{'/'.join(proxy(wf, port, 'ws'))}"
    for url, headers in (
        (ws_link, {**sent, "Authorization": "token x"}),
        (ws_prog, {**sent, **bob}),
    ):
        ws = await websocket_connect(HTTPRequest(f"{url}?token=t", headers=headers))
        await ws.write_message("hi")
        assert await asyncio.wait_for(ws.read_message(), 10) == "echo:hi"
        ws.close()
        last = (await seen(jp_fetch, wf, port, bob))[-1]
        lower = {k.lower(): v for k, v in last["headers"].items()}
        assert last["path"] == "/ws" and "token" not in json.dumps(last), last
        assert {"authorization", "x-xsrftoken"}.isdisjoint(lower), last
        assert lower.get("cookie") == (None if url == ws_link else "other=1"), last

    # The sandboxed page's own CORS requests are answered for the link, with no credentials.
    pre = await client.fetch(
        f"{base}{link}", method="OPTIONS", raise_error=False, headers={
            "Origin": "null", "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type"},
    )  # fmt: skip
    assert pre.code == 204, pre.body
    assert pre.headers["Access-Control-Allow-Origin"] == "null"
    assert "Access-Control-Allow-Credentials" not in pre.headers

    # A forged, tampered or foreign ticket is refused.
    ticket = link.split("/osmo/api/v1/apps/", 1)[1].split("/", 1)[0]
    payload, mac = ticket.split(".")
    for bad in (f"{payload}.{mac[:-2]}AA", f"{payload[:-2]}AA.{mac}", "e30.e30"):
        got = await client.fetch(f"{base}{link.replace(ticket, bad)}", raise_error=False)
        assert got.code == 403, (bad, got.body)
        assert "link" in json.loads(got.body)["message"]


@pytest.mark.parametrize("app_mode", ["sandbox"], indirect=True)
async def test_an_app_link_obeys_the_task_and_expires(
    bobs_app: Any, as_browser: Any, api: Any, service: Any, jp_http_port: int
) -> None:
    wf, port, bob = bobs_app
    resp = await as_browser(proxy(wf, port, ""))
    link = f"http://127.0.0.1:{jp_http_port}{resp.headers['Location']}"
    client = AsyncHTTPClient()
    assert (await client.fetch(link + "data.json")).code == 200

    service.config.app_link_ttl = -1.0  # links made from now on are already expired
    resp = await as_browser(proxy(wf, port, ""))
    expired = f"http://127.0.0.1:{jp_http_port}{resp.headers['Location']}"
    assert (await client.fetch(expired, raise_error=False)).code == 403

    await api("POST", f"workflows/{wf}/cancel", body=b"", headers=bob)
    await until(lambda: service.task(wf, "main")["status"] != "RUNNING", what="the cancel")
    assert (await client.fetch(link, raise_error=False)).code == 409  # checked every request


@pytest.mark.parametrize("app_mode", ["app-host", "app-per-port"], indirect=True)
async def test_the_app_origin_answers_app_links_only(
    bobs_app: Any, as_browser: Any, jp_fetch: Any, jp_serverapp: Any, jp_http_port: int,
    app_mode: str,
) -> None:  # fmt: skip
    wf, port, bob = bobs_app
    resp = await as_browser(proxy(wf, port, "x"))
    link = urllib.parse.urlsplit(resp.headers["Location"])
    assert link.port == jp_http_port and link.hostname != "127.0.0.1", link
    client = AsyncHTTPClient()
    at_app = f"http://127.0.0.1:{jp_http_port}"

    def on_app_host(path: str, **headers: str) -> HTTPRequest:
        headers["Host"] = f"{link.hostname}:{link.port}"
        return HTTPRequest(f"{at_app}{path}", headers=headers, follow_redirects=False)

    # The link is not served on the server's own host name (it would not be sandboxed).
    got = await client.fetch(f"{at_app}{link.path}", raise_error=False)
    assert got.code == 404, got.body
    got = await client.fetch(on_app_host(link.path), raise_error=False)
    jar = ""
    if app_mode == "app-per-port":  # one origin per task port, the app at its root
        assert len(link.hostname.split(".")[0]) == 16, link
        assert (got.code, got.headers["Location"]) == (302, "/x"), got.body
        cookie = got.headers["Set-Cookie"]
        assert cookie.startswith("osmo-app=") and "HttpOnly" in cookie and "Lax" in cookie
        again = await client.fetch(on_app_host(link.path), raise_error=False)
        assert again.code == 403 and "used already" in json.loads(again.body)["message"]
        jar = cookie.split(";", 1)[0]
        # The app's own cookies and `token=` (e.g. a Jupyter server in the task) reach it.
        req = on_app_host("/x?token=inner&a=%2F", Cookie=f"{jar}; _xsrf=inner")
        got = await client.fetch(req, raise_error=False)
        inner = (await seen(jp_fetch, wf, port, bob))[-1]
        assert (inner["path"], inner["headers"]["Cookie"]) == ("/x", "_xsrf=inner"), inner
        assert inner["query"] == "token=inner&a=%2F", inner
    assert (got.code, got.body) == (200, b"app")
    assert "sandbox" not in got.headers.get("Content-Security-Policy", "")  # a real origin
    # Its cookies are its own there; it still cannot wipe the origin's data or put a service
    # worker over other apps' links, and the link does not leave in a Referer.
    assert got.headers["Set-Cookie"].startswith("_xsrf=planted")
    assert "Clear-Site-Data" not in got.headers and "Service-Worker-Allowed" not in got.headers
    assert got.headers["Referrer-Policy"] == "same-origin"
    # The server's own routes do not answer on the app host name, whatever the credential:
    # on a shared app host nothing does; on an app's own, the app does (for its cookie).
    token = jp_serverapp.identity_provider.token
    for path in ("osmo/api/v1/me", "api/status", "osmo/api/v1/tokens", "login"):
        for cookie in ({"Cookie": jar} if jar else {}, {}):
            req = on_app_host(f"{jp_serverapp.base_url}{path}", **cookie)
            req.headers["Authorization"] = f"token {token}"
            got = await client.fetch(req, raise_error=False)
            if cookie:
                assert (got.code, got.body) == (200, b"app"), path
            elif app_mode == "app-per-port":
                assert got.code == 403 and "one task" in json.loads(got.body)["message"], path
            else:
                assert got.code == 404 and "apps only" in json.loads(got.body)["message"], path


# --- header injection through the path ---------------------------------------------------------

INJECTIONS = ["a%0d%0aX-Injected:%201", "a%0aX-Injected:%201", "a%0d", "a%00b", "a%1bb", "a%7f"]


@pytest.mark.parametrize("app_mode", ["sandbox"], indirect=True)
async def test_control_characters_in_the_proxied_path_are_refused(
    bobs_app: Any, jp_fetch: Any, jp_http_port: int, jp_base_url: str
) -> None:
    wf, port, bob = bobs_app
    at = f"127.0.0.1:{jp_http_port}{jp_base_url}{'/'.join(proxy(wf, port))}/"

    async def refused(tail: str) -> None:
        """`tail` (sent as is, already escaped) is a 400 over HTTP and as a WebSocket."""
        got = await AsyncHTTPClient().fetch(f"http://{at}{tail}", headers=bob, raise_error=False)
        assert got.code == 400, (tail, got.body)
        assert "control character" in json.loads(got.body)["message"]
        with pytest.raises(HTTPClientError) as e:  # the WebSocket tunnel writes it by hand
            await websocket_connect(HTTPRequest(f"ws://{at}{tail}", headers=bob))
        assert e.value.code == 400, tail

    for bad in INJECTIONS:
        await refused(bad)
        await refused(f"ws?q={bad}")
    await refused("ws?q%0d%0aX-Injected:%201=1")
    # None of it reached the app; a clean WebSocket still does.
    ws = await websocket_connect(HTTPRequest(f"ws://{at}ws", headers=bob))
    await ws.write_message("hi")
    assert await asyncio.wait_for(ws.read_message(), 10) == "echo:hi"
    ws.close()
    reached = await seen(jp_fetch, wf, port, bob)
    assert [r["path"] for r in reached] == ["/ws"], reached
    assert not any("X-Injected" in r["headers"] for r in reached)


@pytest.mark.parametrize("app_mode", ["sandbox"], indirect=True)
async def test_a_raw_cr_or_lf_in_the_request_line_never_reaches_the_app(
    bobs_app: Any, jp_fetch: Any, jp_http_port: int, jp_base_url: str
) -> None:
    wf, port, bob = bobs_app
    path = f"{jp_base_url}{'/'.join(proxy(wf, port))}"
    for raw in (b"/a\rX-Injected: 1", b"/a\x01"):
        line = b"GET " + path.encode() + raw + b" HTTP/1.1\r\n"
        head = f"Host: 127.0.0.1:{jp_http_port}\r\n{next(iter(bob))}: {bob['Authorization']}"
        request = line + head.encode() + b"\r\nConnection: close\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
        writer.write(request)
        status = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status.split()[1] == b"400", (raw, status)
    assert await seen(jp_fetch, wf, port, bob) == []


def test_app_proxy_url_is_checked() -> None:
    from traitlets import TraitError

    from osmo_core.config import OsmoConfig

    for bad in ("apps.example.org", "ftp://apps", "http://apps/x", "http://a.{app}.b", "http://?q"):
        with pytest.raises(TraitError):
            OsmoConfig(app_proxy_url=bad)
    for good in ("", "https://apps.example.org", "http://{app}.apps.example.org:8443/"):
        assert OsmoConfig(app_proxy_url=good).app_proxy_url == good
