"""OSMO's own CLI against this server: the OSMO-compatible API (osmo_jupyter/server/osmo_api)
on a real headless server over HTTP, driven by a client that sends what OSMO's CLI sends
(osmo_client.py): login and token refresh, submit / validate / dry run, list, query, logs,
cancel, restart, spec, pools, profile, tokens, and who may see what."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from osmo_core.auth import Principal, SessionTokens
from osmo_jupyter.identity import OsmoIdentityProvider
from tests.conftest import EXAMPLES
from tests.jupyter.osmo_client import OsmoCli, OsmoError, claims

SERIAL = (EXAMPLES / "serial.yaml").read_text()
TEMPLATED = (EXAMPLES / "templated.yaml").read_text()
SLOW = """workflow:
  name: slow
  tasks:
  - name: talker
    command: [sh, -c]
    args: ["for i in 1 2 3; do echo line-$i; sleep 0.3; done; echo oops >&2; exit 3"]
"""


@pytest.fixture
def jp_server_config(osmo_data_dir: Path, oidc_issuer: Any) -> dict[str, Any]:
    platforms = {"local": {}}
    return {
        "ServerApp": {
            "jpserver_extensions": {"osmo_jupyter": True},
            "identity_provider_class": OsmoIdentityProvider,
        },
        "OsmoConfig": {
            "data_dir": str(osmo_data_dir),
            "backends": {"local": {"kind": "local", "idle_timeout": 60}},
            "pools": {
                "local": {"backend": "local", "platforms": platforms},
                "gpu": {"backend": "local", "platforms": platforms, "users": ["carol"]},
            },
            "oidc_issuer": oidc_issuer.url,
        },
    }


@pytest.fixture
def login_url(jp_http_port: int, jp_base_url: str, jp_fetch: Any, osmo: Any) -> str:
    """What a user gives `osmo login`: this server's URL and `osmo` (jp_fetch: the server
    listening; osmo: its service started)."""
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}osmo"


@pytest.fixture
def cli(login_url: str, api: Any) -> Any:
    """`await cli("alice")` → an OSMO CLI logged in as alice with a personal access token."""

    async def make(user: str) -> OsmoCli:
        made = await api("POST", "tokens", body={"name": "cli", "user": user}, status=201)
        client = OsmoCli(login_url)
        await client.login(made["token"])
        return client

    return make


async def until(client: OsmoCli, wf_id: str, statuses: set[str], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        wf = await client.request("GET", f"api/workflow/{wf_id}")
        if wf["status"] in statuses:
            return wf
        assert time.monotonic() < deadline, f"{wf_id} still {wf['status']}"
        await asyncio.sleep(0.1)


def submit_body(text: str, *sets: str, template: str | None = None) -> dict[str, Any]:
    """The body OSMO's CLI posts (TemplateData.to_dict)."""
    return {
        "file": text,
        "set_variables": list(sets),
        "set_string_variables": [],
        "uploaded_templated_spec": template,
    }


# --- login ----------------------------------------------------------------------------------


async def test_a_personal_access_token_logs_in_and_its_jwt_names_the_user(cli, service):
    alice = await cli("alice")
    exchange = alice.sent[-1]
    assert "Authorization" not in exchange.headers  # the exchange carries the token in its body
    jwt = claims(alice.id_token)
    ttl = service.config.session_token_minutes * 60
    assert jwt["name"] == "alice" and jwt["role"] == "user"
    assert abs(jwt["exp"] - time.time() - ttl) < 30
    profile = await alice.request("GET", "api/profile/settings")
    assert profile["profile"]["username"] == "alice" and profile["roles"] == ["user"]
    assert profile["pools"] == ["local"]  # gpu is carol's


async def test_the_jupyter_token_logs_in_as_the_servers_owner(login_url, jp_serverapp):
    owner = OsmoCli(login_url)
    await owner.login(jp_serverapp.identity_provider.token)
    assert claims(owner.id_token)["name"] == getpass.getuser()
    profile = await owner.request("GET", "api/profile/settings")
    assert profile["roles"] == ["admin"] and profile["pools"] == ["gpu", "local"]


async def test_an_expired_jwt_is_refreshed_by_the_client_and_refused_by_the_server(cli, service):
    alice = await cli("alice")
    old = SessionTokens(service.auth.sessions.key_path, 60, clock=lambda: time.time() - 3600)
    alice.id_token, _ = old.issue(Principal("alice"))
    await alice.request("GET", "api/workflow")  # the CLI saw it expired and refreshed it
    assert alice.refreshes == 1 and claims(alice.id_token)["exp"] > time.time()

    expired = OsmoCli(alice.url, id_token=old.issue(Principal("alice"))[0])
    expired._refresh_if_needed = _never  # type: ignore[method-assign]  # send it as it is
    with pytest.raises(OsmoError) as e:
        await expired.request("GET", "api/workflow")
    assert e.value.status == 401 and "expired" in e.value.body["message"]
    assert e.value.body["error_code"] == "UNAUTHORIZED"


async def _never() -> None:
    return None


async def test_bad_tokens_are_refused_with_a_reason(cli, login_url, api, service):
    with pytest.raises(OsmoError) as e:
        await OsmoCli(login_url).login("not-a-token")
    assert e.value.status == 401 and "unknown token" in e.value.body["message"]

    alice = await cli("alice")
    with pytest.raises(OsmoError) as e:  # a session JWT is not a refresh token
        await OsmoCli(login_url).login(alice.id_token)
    assert e.value.status == 401 and "session token" in e.value.body["message"]

    forged = OsmoCli(login_url, id_token=alice.id_token[:-4] + "AAAA")
    with pytest.raises(OsmoError) as e:
        await forged.request("GET", "api/workflow")
    assert e.value.status == 401 and "invalid session token" in e.value.body["message"]

    # a revoked token: the session ends at the next refresh
    (record,) = [t for t in await api("GET", "tokens", params={"user": "alice"})]
    await api("DELETE", f"tokens/{record['id']}")
    alice.id_token = ""
    with pytest.raises(OsmoError) as e:
        await alice.login(alice.refresh_token)
    assert e.value.status == 401 and "revoked" in e.value.body["message"]


async def test_dev_login_needs_the_single_user_switch(login_url, service):
    async def as_dev(name: str) -> Any:
        req = HTTPRequest(
            f"{login_url}/api/workflow", headers={"x-osmo-user": name, "User-Agent": "osmo-cli/6"}
        )
        try:
            return json.loads((await AsyncHTTPClient().fetch(req)).body)
        except HTTPClientError as e:
            assert e.response is not None
            return e.code, json.loads(e.response.body)

    code, body = await as_dev(getpass.getuser())
    assert code == 401 and "osmo_cli_dev_login" in body["message"]
    service.config.osmo_cli_dev_login = True
    assert (await as_dev(getpass.getuser()))["workflows"] == []
    code, body = await as_dev("mallory")
    assert code == 401 and "owner" in body["message"]


async def test_login_info_advertises_the_oidc_issuer(login_url, oidc_issuer):
    resp = await AsyncHTTPClient().fetch(f"{login_url}/api/auth/login")
    info = json.loads(resp.body)
    assert info["token_endpoint"] == f"{oidc_issuer.url}/token"
    assert info["device_endpoint"] == f"{oidc_issuer.url}/device"
    assert info["browser_endpoint"] == f"{oidc_issuer.url}/auth"
    assert info["device_client_id"] == "osmo"
