"""Auth on a real server with the headless identity provider: the server's token (its owner, an
admin), personal access tokens, OIDC JWTs from a local issuer, per-user visibility and pool
allow-lists — over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from osmo_jupyter.identity import OsmoIdentityProvider
from tests.conftest import EXAMPLES
from tests.jupyter.test_events import until_done
from tests.jupyter.test_handlers import wait_for

SERIAL = (EXAMPLES / "serial.yaml").read_text()


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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def pat(api: Any) -> Any:
    """`await pat("alice")` → a personal access token for alice, made by the server's owner."""

    async def make(user: str, **body: Any) -> str:
        made = await api("POST", "tokens", body={"name": "test", "user": user, **body}, status=201)
        return str(made["token"])

    return make


async def test_the_server_token_is_its_owner_and_an_admin(api):
    assert await api("GET", "me") == {"name": getpass.getuser(), "role": "admin", "via": "jupyter"}


async def test_users_see_and_act_on_their_own_workflows_only(api, pat, jp_ws_fetch):
    alice, bob = bearer(await pat("alice")), bearer(await pat("bob"))
    assert (await api("GET", "me", headers=alice))["name"] == "alice"
    wf = (await api("POST", "workflows", body={"spec": SERIAL}, headers=alice, status=201))["id"]
    done = await wait_for(lambda *a, **k: api(*a, headers=alice, **k), wf, {"COMPLETED"})
    assert done["user"] == "alice"

    for method, path in [
        ("GET", f"workflows/{wf}"),
        ("GET", f"workflows/{wf}/spec"),
        ("GET", f"workflows/{wf}/tasks/task1"),
        ("GET", f"workflows/{wf}/tasks/task1/logs"),
        ("POST", f"workflows/{wf}/cancel"),
        ("POST", f"workflows/{wf}/restart"),
    ]:
        err = await api(method, path, headers=bob, status=403)
        assert err["reason"] == "forbidden" and "belongs to another user" in err["message"]
    assert await api("GET", "workflows", headers=bob) == []
    assert [w["id"] for w in await api("GET", "workflows", headers=alice)] == [wf]
    # the owner (an admin) sees everyone's
    assert (await api("GET", f"workflows/{wf}"))["user"] == "alice"
    assert [w["id"] for w in await api("GET", "workflows", params={"user": "alice"})] == [wf]

    # WebSockets: refused at the handshake for another user's workflow ...
    with pytest.raises(HTTPClientError) as e:
        await jp_ws_fetch("osmo", "api", "v1", "events", params={"workflow_id": wf}, headers=bob)
    assert e.value.code == 403
    with pytest.raises(HTTPClientError) as e:
        await jp_ws_fetch(
            "osmo", "api", "v1", "workflows", wf, "tasks", "task1", "logs", "follow", headers=bob
        )
    assert e.value.code == 403
    # ... and without a filter a user gets their own workflows' events only
    ws = await jp_ws_fetch("osmo", "api", "v1", "events", params={"logs": "false"}, headers=bob)
    mine = (await api("POST", "workflows", body={"spec": SERIAL}, headers=bob, status=201))["id"]
    got = await until_done(ws, mine)
    ws.close()
    assert got and {e["workflow_id"] for e in got} == {mine}


async def test_expired_revoked_and_unknown_tokens_get_401_with_the_reason(api, pat, jp_ws_fetch):
    short = await pat("alice", expires_in_days=0.2 / 86400)
    await asyncio.sleep(0.3)
    for method, body in (("GET", None), ("POST", {"spec": SERIAL})):
        # a POST gets the reason too, not jupyter_server's complaint about an XSRF cookie
        err = await api(method, "workflows", body=body, headers=bearer(short), status=401)
        assert "expired at" in err["message"] and "create a new one" in err["message"]
    revoked = await pat("alice")
    (token_id,) = [t["id"] for t in await api("GET", "tokens", params={"user": "alice"})][-1:]
    await api("DELETE", f"tokens/{token_id}")
    err = await api("GET", "workflows", headers=bearer(revoked), status=401)
    assert "has been revoked" in err["message"]
    err = await api("GET", "me", headers=bearer("osmo_000000000000_" + "x" * 40), status=401)
    assert err["message"] == "unknown personal access token"
    with pytest.raises(HTTPClientError) as e:
        await jp_ws_fetch("osmo", "api", "v1", "events", headers=bearer(revoked))
    assert e.value.code == 401


async def test_token_management_rules(api, pat):
    alice = bearer(await pat("alice"))
    made = await api("POST", "tokens", body={"name": "mine"}, headers=alice, status=201)
    assert made["user"] == "alice" and made["role"] == "user" and made["token"].startswith("osmo_")
    listed = await api("GET", "tokens", headers=alice)
    assert {t["name"] for t in listed} == {"test", "mine"} and all("token" not in t for t in listed)
    err = await api("POST", "tokens", body={"name": "x", "user": "bob"}, headers=alice, status=403)
    assert "only an admin" in err["message"]
    await api("POST", "tokens", body={"name": "x", "role": "admin"}, headers=alice, status=403)
    err = await api("POST", "tokens", body={"name": "", "bogus": 1}, status=400)
    assert {d["field"] for d in err["details"]} == {"name", "bogus"}
    bob_token = await api("POST", "tokens", body={"name": "b", "user": "bob"}, status=201)
    await api("DELETE", f"tokens/{bob_token['id']}", headers=alice, status=403)


async def test_credentials_are_each_user_s_own_and_their_secrets_never_come_back(api, pat):
    alice, bob = bearer(await pat("alice")), bearer(await pat("bob"))
    secret = "alice-access-key-0123456789"
    body = {
        "name": "lake",
        "type": "DATA",
        "payload": {"endpoint": "s3://lake/", "access_key_id": "AKIA1", "access_key": secret},
    }
    made = await api("POST", "credentials", body=body, headers=alice, status=201)
    assert made["fields"] == {"endpoint": "s3://lake"} and made["user"] == "alice"
    err = await api("POST", "credentials", body=body, headers=alice, status=409)
    assert "PUT replaces it" in err["message"]
    token = {"type": "GENERIC", "payload": {"token": secret + "-generic"}}
    await api("PUT", "credentials/tok", body=token, headers=alice)
    listed = await api("GET", "credentials", headers=alice)
    assert [(c["name"], c["type"]) for c in listed] == [("lake", "DATA"), ("tok", "GENERIC")]
    assert next(c["keys"] for c in listed if c["name"] == "tok") == ["token"]
    assert await api("GET", "credentials", headers=bob) == []  # bob sees none of alice's
    await api("GET", "credentials", params={"user": "alice"}, headers=bob, status=403)
    await api("DELETE", "credentials/lake", params={"user": "alice"}, headers=bob, status=403)
    await api("DELETE", "credentials/lake", headers=bob, status=404)
    everyone = await api("GET", "credentials", params={"user": "*"})  # the server's owner: admin
    assert {(c["user"], c["name"]) for c in everyone} == {("alice", "lake"), ("alice", "tok")}
    assert secret not in json.dumps([made, listed, everyone])

    bad = {"type": "DATA", "payload": {"endpoint": "https://minio:9000", "access_key": "x"}}
    err = await api("PUT", "credentials/lake2", body=bad, headers=alice, status=422)
    fields = {d["field"]: d for d in err["details"]}
    assert set(fields) == {"payload.endpoint", "payload.access_key_id"}
    assert "override_url" in fields["payload.endpoint"]["hint"]
    err = await api("PUT", "credentials/9x", body=token, headers=alice, status=422)
    assert err["details"][0]["field"] == "name"
    deleted = await api("DELETE", "credentials/lake", headers=alice)
    assert deleted["name"] == "lake"
    assert [c["name"] for c in await api("GET", "credentials", headers=alice)] == ["tok"]


async def test_pool_allow_lists(api, pat):
    alice, carol = bearer(await pat("alice")), bearer(await pat("carol"))
    assert [p["name"] for p in await api("GET", "pools", headers=alice)] == ["local"]
    assert {p["name"] for p in await api("GET", "pools", headers=carol)} == {"local", "gpu"}
    body = {"spec": SERIAL, "pool": "gpu"}
    err = await api("POST", "workflows", body=body, headers=alice, status=403)
    assert err["message"] == (
        "pool 'gpu' is open to user carol; 'alice' (role user) is not among them"
    )
    await api("POST", "workflows", body={**body, "dry_run": True}, headers=alice, status=403)
    assert await api("GET", "workflows", headers=alice) == []  # nothing was stored
    await api("POST", "workflows", body=body, headers=carol, status=201)


async def test_oidc_tokens(api, oidc_issuer):
    dana = bearer(oidc_issuer.sign("dana"))
    assert await api("GET", "me", headers=dana) == {"name": "dana", "role": "user", "via": "oidc"}
    wf = (await api("POST", "workflows", body={"spec": SERIAL}, headers=dana, status=201))["id"]
    assert (await api("GET", f"workflows/{wf}", headers=dana))["user"] == "dana"
    boss = bearer(oidc_issuer.sign("erin", roles=["admin"]))
    assert (await api("GET", "me", headers=boss))["role"] == "admin"
    assert [w["id"] for w in await api("GET", "workflows", headers=boss)] == [wf]
    expired = bearer(oidc_issuer.sign("dana", expires_in=-120))
    err = await api("POST", "workflows", body={"spec": SERIAL}, headers=expired, status=401)
    assert "expired" in err["message"]
    wrong_aud = bearer(oidc_issuer.sign("dana", aud="other"))
    err = await api("GET", "me", headers=wrong_aud, status=401)
    assert "not for audience 'osmo'" in err["message"]


async def test_log_follow_websocket(api, jp_ws_fetch):
    spec = """workflow:
  name: ticker
  tasks:
  - name: tick
    command: [sh, -c, "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done"]
"""
    wf = (await api("POST", "workflows", body={"spec": spec}, status=201))["id"]
    ws = await jp_ws_fetch("osmo", "api", "v1", "workflows", wf, "tasks", "tick", "logs", "follow")
    got = []
    while (msg := await ws.read_message()) is not None:
        got.append(json.loads(msg))
    texts = [m["text"] for m in got if m["type"] == "log" and m["stream"] == "stdout"]
    assert texts == [f"line {i}" for i in range(1, 6)]
    ns = [m["n"] for m in got if m["type"] == "log"]
    assert ns == sorted(set(ns)), "each line once, in order"
    assert got[-1] == {"type": "end", "status": "COMPLETED", "retry_id": 0}
