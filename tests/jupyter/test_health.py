"""Health over HTTP on a real server: `GET /health` stays a cheap liveness answer for anyone;
`GET /health/detail` tells an admin whether the server is up *and* working."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from osmo_core.schema import schema_head
from osmo_jupyter.identity import OsmoIdentityProvider
from osmo_jupyter.schemas import HealthDetail
from tests.jupyter.test_auth import bearer


@pytest.fixture
def jp_server_config(osmo_data_dir: Path) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"osmo_jupyter": True},
            "identity_provider_class": OsmoIdentityProvider,  # the server's token is an admin
        },
        "OsmoConfig": {
            "data_dir": str(osmo_data_dir),
            "backends": {"local": {"kind": "local", "idle_timeout": 60}},
        },
    }


async def test_health_detail_for_admins_only(api: Any) -> None:
    deadline = time.monotonic() + 10
    while (detail := await api("GET", "health/detail"))["last_tick"] is None:
        assert time.monotonic() < deadline, "the engine's tick never answered"
        await asyncio.sleep(0.2)
    assert detail["status"] == "ok" and detail["problems"] == [], detail
    assert 0 <= detail["loop_lag"] < 2
    assert abs(detail["last_tick"] - time.time()) < 5
    assert detail["backends"] == [{"name": "local", "kind": "local", "connected": True, "tasks": 0}]
    assert [(h["backend"], h["online"]) for h in detail["hosts"]] == [("local", True)]
    HealthDetail.model_validate(detail)  # the documented model (OpenAPI)
    store = detail["store"]
    assert (store["reachable"], store["schema_version"], store["pending_writes"]) == (
        True,
        schema_head(),  # the newest migration's
        0,
    )
    assert detail["reconcile"]["interval"] == 5.0 and detail["reconcile"]["checking"] == 0
    made = await api("POST", "tokens", body={"name": "t", "user": "alice"}, status=201)
    alice = bearer(made["token"])
    err = await api("GET", "health/detail", headers=alice, status=403)
    assert "admins" in err["message"]
    assert await api("GET", "health", headers=alice) == {"status": "ok"}
