"""OSMO's own CLI against this server: the OSMO-compatible API (osmo_jupyter/server/osmo_api)
on a real headless server over HTTP, driven by a client that sends what OSMO's CLI sends
(osmo_client.py): login and token refresh, submit / validate / dry run, list, query, logs,
cancel, restart, spec, pools, profile, tokens, and who may see what."""

from __future__ import annotations

import asyncio
import datetime
import getpass
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from osmo_core.auth import Principal, SessionTokens
from tests.conftest import EXAMPLES
from tests.jupyter.conftest import FixedIdentity
from tests.jupyter.osmo_client import OsmoCli, OsmoError, claims, credential_body
from tests.jupyter.test_auth import jp_server_config  # noqa: F401  (the same server as test_auth)

TEMPLATED = (EXAMPLES / "templated.yaml").read_text()
# No image: the tests run the tasks as processes, whatever container engine the machine has.
SERIAL = """workflow:
  name: serial
  tasks:
  - name: task1
    command: [sh, -c]
    args: ["echo 'task1: writing data'; echo 'hello from task1' > {{output}}/data.txt"]
  - name: task2
    command: [sh, -c]
    args: ["cat {{input:0}}/data.txt; echo 'hello from task2'"]
    inputs:
    - task: task1
"""
SLOW = """workflow:
  name: slow
  tasks:
  - name: talker
    command: [sh, -c]
    args: ["for i in 1 2 3; do echo line-$i; sleep 0.3; done; echo oops >&2; exit 3"]
"""


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
        ended = [(t["name"], t["status"], t["failure_message"]) for g in wf["groups"]
                 for t in g["tasks"]]  # fmt: skip
        assert wf["status"] in ("PENDING", "RUNNING", "WAITING"), (wf["status"], ended)
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


# --- workflows ------------------------------------------------------------------------------


async def test_submit_query_logs_spec_as_osmo_does(cli):
    alice = await cli("alice")
    # `osmo workflow submit serial.yaml --pool local --priority HIGH` (no template: one POST)
    done = await alice.request(
        "POST", "api/pool/local/workflow", payload=submit_body(SERIAL),
        params={"priority": "HIGH"},
    )  # fmt: skip
    wf_id = done["name"]
    assert done["overview"].endswith(f"/osmo/api/workflow/{wf_id}") and done["warnings"] == []
    wf = await until(alice, wf_id, {"COMPLETED"})
    assert (wf["submitted_by"], wf["pool"], wf["priority"]) == ("alice", "local", "HIGH")
    tasks = [(t["name"], t["status"]) for g in wf["groups"] for t in g["tasks"]]
    assert tasks == [("task1", "COMPLETED"), ("task2", "COMPLETED")]
    assert wf["submit_time"] and "+" not in wf["submit_time"]  # naive UTC, as OSMO's CLI parses

    # `osmo workflow logs ID` and `--task task3 -n 1`
    text = await alice.text("GET", f"api/workflow/{wf_id}/logs")
    assert "[task1] task1: writing data" in text and "[task2] hello from task1" in text
    tail = await alice.text(
        "GET", f"api/workflow/{wf_id}/logs", params={"task_name": "task2", "last_n_lines": 1}
    )
    assert tail.count("\n") == 1 and tail.endswith("[task2] hello from task2\n")
    # `osmo workflow spec ID`: rendered, as run
    spec = await alice.text("GET", f"api/workflow/{wf_id}/spec", params={"use_template": False})
    assert "name: serial" in spec
    events = await alice.text("GET", f"api/workflow/{wf_id}/events", params={"task_name": "task1"})
    assert "task.status COMPLETED" in events and "[task1]" in events


async def test_a_templated_submit_keeps_the_template(cli):
    alice = await cli("alice")
    # the CLI first asks for a dry run to render it...
    dry = await alice.request(
        "POST", "api/pool/local/workflow", payload=submit_body(TEMPLATED, "shards=2"),
        params={"dry_run": True},
    )  # fmt: skip
    assert "shard-1" in dry["spec"] and "shard-2" not in dry["spec"] and "{%" not in dry["spec"]
    # ...then posts the rendered spec with the template beside it
    done = await alice.request(
        "POST", "api/pool/local/workflow",
        payload=submit_body(dry["spec"], "shards=2", template=TEMPLATED),
        params={"dry_run": False},
    )  # fmt: skip
    wf_id = done["name"]
    template = await alice.text("GET", f"api/workflow/{wf_id}/spec", params={"use_template": True})
    assert template == TEMPLATED
    assert "shard-1" in await alice.text("GET", f"api/workflow/{wf_id}/spec")
    await until(alice, wf_id, {"COMPLETED"})
    # restart renders the template again with the values it was submitted with
    again = await alice.request("POST", f"api/pool/local/workflow/{wf_id}/restart")
    assert again["name"] != wf_id
    wf = await until(alice, again["name"], {"COMPLETED"})
    # groups in spec order, as OSMO lists them
    assert [t["name"] for g in wf["groups"] for t in g["tasks"]] == ["shard-0", "shard-1", "gather"]


async def test_validate_reports_located_errors(cli):
    alice = await cli("alice")
    bad = SERIAL.replace("- task: task1", "- task: nosuch")
    with pytest.raises(OsmoError) as e:  # `osmo workflow validate bad.yaml`
        await alice.request(
            "POST", "api/pool/local/workflow", payload=submit_body(bad),
            params={"validation_only": True, "dry_run": False},
        )  # fmt: skip
    assert e.value.status == 422 and e.value.body["error_code"] == "USAGE"
    assert "nosuch" in e.value.body["message"] and ":11:" in e.value.body["message"]
    assert e.value.body["details"][0]["line"] == 11
    ok = await alice.request(
        "POST", "api/pool/local/workflow", payload=submit_body(SERIAL),
        params={"validation_only": True, "dry_run": False},
    )  # fmt: skip
    assert "is valid" in ok["logs"]
    assert await alice.request("GET", "api/workflow") == {"workflows": [], "more_entries": False}
    with pytest.raises(OsmoError) as e:  # a pool that is not open to alice
        await alice.request("POST", "api/pool/gpu/workflow", payload=submit_body(SERIAL))
    assert e.value.status == 403 and "carol" in e.value.body["message"]
    with pytest.raises(OsmoError) as e:  # a bad --set-env is refused, named
        await alice.request(
            "POST", "api/pool/local/workflow", payload=submit_body(SERIAL),
            params={"env_vars": ["A"]},
        )  # fmt: skip
    assert e.value.status == 422 and "--set-env" in e.value.body["message"]
    labelled = await alice.request(
        "POST", "api/pool/local/workflow", payload=submit_body(SERIAL),
        params={"env_vars": ["A=1"], "label": ["team=vision"]},
    )  # fmt: skip
    native = await alice.request("GET", f"api/v1/workflows/{labelled['name']}")
    assert native["labels"] == {"team": "vision"}


async def test_list_pages_with_more_entries(cli):
    alice = await cli("alice")
    ids = [
        (await alice.request("POST", "api/pool/local/workflow", payload=submit_body(SERIAL)))[
            "name"
        ]
        for _ in range(3)
    ]
    # `osmo workflow list --count 2` (the CLI always sends order=DESC and all_pools)
    params = {"order": "DESC", "all_pools": True, "limit": 2, "offset": 0}
    page = await alice.request("GET", "api/workflow", params=params)
    assert [w["name"] for w in page["workflows"]] == ids[:0:-1] and page["more_entries"]
    page = await alice.request("GET", "//api/workflow", params={**params, "offset": 2})
    assert [w["name"] for w in page["workflows"]] == ids[:1] and not page["more_entries"]
    entry = page["workflows"][0]
    assert entry["user"] == "alice" and entry["priority"] == "NORMAL" and entry["pool"] == "local"
    for wf_id in ids:
        await until(alice, wf_id, {"COMPLETED"})
    done = await alice.request("GET", "api/workflow", params={"statuses": ["COMPLETED"]})
    assert len(done["workflows"]) == 3
    tasks = await alice.request("GET", "api/task", params={"workflow_id": ids[0], "limit": 10})
    assert [t["task_name"] for t in tasks["tasks"]] == ["task1", "task2"]
    # `osmo task list --summary` / `--aggregate-by-workflow` (what the CLI sends)
    params = {"limit": 20, "offset": 0, "all_users": False, "order": "ASC", "all_pools": True}
    listed = (await alice.request("GET", "api/task", params=params))["tasks"]
    assert len(listed) == 6
    total = {k: sum(t[k] for t in listed) for k in ("cpu", "gpu", "storage")}
    assert total["cpu"] > 0
    (summary,) = (await alice.request("GET", "api/task", params={**params, "summary": True}))[
        "summaries"
    ]
    assert summary == {"user": "alice", "pool": "local", "priority": "NORMAL", **total,
                       "memory": summary["memory"]}  # fmt: skip
    assert summary["memory"] == round(sum(t["memory"] for t in listed), 3)
    by_wf = await alice.request("GET", "api/task", params={**params, "aggregate_by_workflow": True})
    assert [e["workflow_id"] for e in by_wf["summaries"]] == ids
    assert sum(e["cpu"] for e in by_wf["summaries"]) == total["cpu"]
    low = await alice.request("GET", "api/task", params={**params, "priority": ["LOW"]})
    assert low["tasks"] == []


async def test_logs_stream_until_the_task_ends_and_error_logs(cli):
    alice = await cli("alice")
    wf_id = (await alice.request("POST", "api/pool/local/workflow", payload=submit_body(SLOW)))[
        "name"
    ]
    chunks: list[tuple[float, bytes]] = []
    resp = await alice.raw(
        "GET", f"api/workflow/{wf_id}/logs", params={"task_name": "talker"},
        streaming=lambda b: chunks.append((time.monotonic(), b)),
    )  # fmt: skip
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    text = b"".join(c for _, c in chunks).decode()
    assert [ln.split("] ")[1] for ln in text.splitlines()] == [
        "line-1", "line-2", "line-3", "oops",
    ]  # fmt: skip
    assert chunks[-1][0] - chunks[0][0] > 0.3  # it came while the task ran, not at once
    wf = await alice.request("GET", f"api/workflow/{wf_id}")  # the stream ended with the task
    assert wf["groups"][0]["tasks"][0]["status"] == "FAILED"
    errors = await alice.text(
        "GET", f"api/workflow/{wf_id}/error_logs", params={"task_name": "talker"}
    )
    assert "[talker] oops" in errors and "exit code 3" in errors and "line-1" not in errors


async def test_cancel_and_the_owner_rule(cli):
    alice, bob = await cli("alice"), await cli("bob")
    wf_id = (await alice.request("POST", "api/pool/local/workflow", payload=submit_body(SLOW)))[
        "name"
    ]
    for method, endpoint in [
        ("GET", f"api/workflow/{wf_id}"),
        ("GET", f"api/workflow/{wf_id}/spec"),
        ("GET", f"api/workflow/{wf_id}/logs"),
        ("POST", f"api/workflow/{wf_id}/cancel"),
        ("POST", f"api/pool/local/workflow/{wf_id}/restart"),
    ]:
        with pytest.raises(OsmoError) as e:
            await bob.request(method, endpoint)
        assert e.value.status == 403 and "belongs to another user" in e.value.body["message"]
    assert (await bob.request("GET", "api/workflow", params={"all_users": True}))["workflows"] == []
    with pytest.raises(OsmoError) as e:
        await bob.request("GET", "api/workflow", params={"users": ["alice"]})
    assert e.value.status == 403
    # `osmo workflow cancel ID`
    assert await alice.request("POST", f"api/workflow/{wf_id}/cancel", params={"force": False}) == {
        "name": wf_id
    }
    wf = await until(alice, wf_id, {"FAILED_CANCELED"})
    assert wf["status"] == "FAILED_CANCELED"
    with pytest.raises(OsmoError) as e:
        await alice.request("GET", "api/workflow/nosuch-1")
    assert e.value.status == 404 and e.value.body["error_code"] == "NOTFOUND"


# --- pools, profile, tokens -----------------------------------------------------------------


async def test_pools_profile_version_and_tokens(cli, login_url):
    alice = await cli("alice")
    pools = await alice.request("GET", "/api/pool", params={"all_pools": True})  # `//api/pool`
    (local,) = pools["node_sets"][0]["pools"]
    assert local["name"] == "local" and local["status"] == "ONLINE"
    assert set(local["resource_usage"]) >= {"quota_used", "quota_limit", "total_capacity"}
    quota = await alice.request("GET", "/api/pool_quota", params={"pools": ["local"]})
    assert [p["name"] for p in quota["node_sets"][0]["pools"]] == ["local"]
    resources = await alice.request("GET", "api/resources", params={"all_pools": True})
    assert resources["resources"][0]["exposed_fields"]["pool/platform"] == ["local/local"]
    version = await alice.request("GET", "api/version")
    assert set(version) == {"major", "minor", "revision", "hash"}

    await alice.request("POST", "api/profile/settings", payload={"pool": "local"})
    with pytest.raises(OsmoError) as e:
        await alice.request("POST", "api/profile/settings", payload={"email_notification": True})
    assert e.value.status == 422 and "notifications" in e.value.body["message"]

    # `osmo token set laptop --expires-at <date>`, `token list`, `token delete laptop`
    tomorrow = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    made = await alice.request(
        "POST", "api/auth/access_token/laptop", params={"expires_at": tomorrow}
    )
    assert isinstance(made, str) and made.startswith("osmo_")
    listed = await alice.request("GET", "api/auth/access_token")
    assert sorted(t["token_name"] for t in listed) == ["cli", "laptop"]
    (laptop_entry,) = [t for t in listed if t["token_name"] == "laptop"]
    assert laptop_entry["expires_at"] == f"{tomorrow}T00:00:00"  # OSMO: expired from that day
    with pytest.raises(OsmoError) as e:
        await alice.request("POST", "api/auth/access_token/laptop")
    assert e.value.status == 409
    laptop = OsmoCli(login_url)
    await laptop.login(made)  # the new token logs in
    assert claims(laptop.id_token)["name"] == "alice"
    await alice.request("DELETE", "api/auth/access_token/laptop")
    assert [t["token_name"] for t in await alice.request("GET", "api/auth/access_token")] == ["cli"]
    with pytest.raises(OsmoError) as e:  # another user's tokens are an admin's business
        await alice.request("GET", "api/auth/user/bob/access_token")
    assert e.value.status == 403
    # `osmo credential set/list/delete`, OSMO's three kinds
    assert await alice.request("GET", "api/credentials") == {"credentials": []}
    secret = "ngc-api-key-0123456789"
    sets = {
        "lake": ("DATA", {"endpoint": "s3://lake/", "access_key_id": "A1", "access_key": secret}),
        "ngc": ("REGISTRY", {"registry": "nvcr.io", "username": "$oauthtoken", "auth": secret}),
        "omni": ("GENERIC", {"omni_user": "alice", "omni_pass": secret}),
    }
    for name, (kind, payload) in sets.items():
        answer = await alice.request(
            "POST", f"api/credentials/{name}", payload=credential_body(kind, payload)
        )
        assert answer is None  # OSMO answers null
    listed = await alice.request("GET", "api/credentials")
    assert listed["credentials"] == [
        {"cred_name": "lake", "cred_type": "DATA", "profile": "s3://lake", "owner": "alice"},
        {"cred_name": "ngc", "cred_type": "REGISTRY", "profile": "nvcr.io", "owner": "alice"},
        {"cred_name": "omni", "cred_type": "GENERIC", "profile": None, "owner": "alice"},
    ]
    bob = await cli("bob")
    assert (await bob.request("GET", "api/credentials"))["credentials"] == []
    with pytest.raises(OsmoError) as e:  # bob cannot delete alice's, nor learn it exists
        await bob.request("DELETE", "api/credentials/lake")
    assert e.value.status == 404
    with pytest.raises(OsmoError) as e:  # OSMO's CLI checks DATA locally; the server too
        await alice.request(
            "POST",
            "api/credentials/x",
            payload=credential_body("DATA", {"endpoint": "s3://b", "access_key": "k"}),
        )
    assert e.value.status == 422 and "data_credential.access_key_id" in e.value.body["message"]
    with pytest.raises(OsmoError) as e:
        await alice.request("POST", "api/credentials/x", payload={})
    assert e.value.status == 422 and "exactly one of" in e.value.body["message"]
    deleted = await alice.request("DELETE", "api/credentials/lake")
    assert deleted == {"credentials": [listed["credentials"][0]]}  # the CLI reads [0]
    assert secret not in json.dumps([listed, deleted])


async def test_a_task_and_what_is_not_served(cli):
    alice = await cli("alice")
    wf_id = (await alice.request("POST", "api/pool/local/workflow", payload=submit_body(SERIAL)))[
        "name"
    ]
    await until(alice, wf_id, {"COMPLETED"})
    task = await alice.request("GET", f"api/workflow/{wf_id}/task/task2")
    assert (task["name"], task["status"], task["exit_code"]) == ("task2", "COMPLETED", 0)
    with pytest.raises(OsmoError) as e:  # OSMO's rsync: refused with the way out
        await alice.request("POST", f"api/workflow/{wf_id}/rsync/task/task2")
    assert e.value.status == 422 and "rsync daemon" in e.value.body["message"]
    with pytest.raises(OsmoError) as e:  # any other route of OSMO's: JSON, not an HTML page
        await alice.request("GET", "api/bucket")
    assert e.value.status == 404 and "not served here" in e.value.body["message"]


class TestUnderJupyterLabsOwnIdentity:
    """Inside `jupyter lab` the server's identity provider is Jupyter's (tests/jupyter's
    FixedIdentity): OSMO's CLI still logs in and its session JWT is still honoured."""

    @pytest.fixture
    def jp_server_config(self, osmo_data_dir: Path) -> dict[str, Any]:
        return {
            "ServerApp": {
                "jpserver_extensions": {"osmo_jupyter": True},
                "identity_provider_class": FixedIdentity,
            },
            "OsmoConfig": {
                "data_dir": str(osmo_data_dir),
                "backends": {"local": {"kind": "local", "idle_timeout": 60}},
            },
        }

    async def test_the_jupyter_token_and_a_pat_log_in(self, login_url, jp_serverapp, api, service):
        native = await api("GET", "me")  # whom the native API makes of the Jupyter token
        owner = OsmoCli(login_url)
        await owner.login(jp_serverapp.identity_provider.token)
        profile = await owner.request("GET", "api/profile/settings")
        assert (profile["profile"]["username"], profile["roles"]) == (
            native["name"], [native["role"]],
        )  # fmt: skip
        done = await owner.request("POST", "api/pool/local/workflow", payload=submit_body(SERIAL))
        assert (await until(owner, done["name"], {"COMPLETED"}))["submitted_by"] == native["name"]

        # a personal access token (made in-process: the Jupyter token is not an admin here)
        pat, _ = service.auth.tokens.create(Principal("root", "admin"), name="cli", user="dave")
        dave = OsmoCli(login_url)
        await dave.login(pat)
        assert (await dave.request("GET", "api/profile/settings"))["profile"]["username"] == "dave"
        assert (await dave.request("GET", "api/workflow"))["workflows"] == []
        with pytest.raises(OsmoError) as e:
            await dave.request("GET", f"api/workflow/{done['name']}")
        assert e.value.status == 403
        with pytest.raises(OsmoError) as e:  # no OIDC issuer here: no code/password login
            await dave.request("GET", "api/auth/login")
        assert e.value.status == 404 and "--method token" in e.value.body["message"]


def test_pool_quota_columns_follow_the_pool_quota() -> None:
    """OSMO's `pool list` columns: the quota is what NORMAL/HIGH work may hold (LOW borrows
    past it); a pool without a GPU quota has its capacity as its quota."""
    from osmo_jupyter.server.osmo_api.pools import _usage

    nodes = [{"gpus": [0, 1, 2, 3], "free_gpus": [3], "online": True}]  # 3 of 4 held
    held = {"HIGH": {"gpu": 0}, "NORMAL": {"gpu": 1}, "LOW": {"gpu": 2}}
    with_quota = _usage(nodes, {"quota": {"gpu": 2, "cpu": None, "memory": None}, "used": held})
    assert (with_quota["quota_limit"], with_quota["quota_used"], with_quota["quota_free"]) == (
        2,
        1,
        1,
    )
    assert (with_quota["total_capacity"], with_quota["total_usage"]) == (4, 3)
    without = _usage(nodes, {"quota": None, "used": held})
    assert (without["quota_limit"], without["quota_used"], without["quota_free"]) == (4, 3, 1)
