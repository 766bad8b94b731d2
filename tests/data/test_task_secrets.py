"""Named credentials handed to tasks (OSMO's `credentials:`), masked in their logs, and never
written into specs, events or attempt records; and checkpoints uploaded while a task runs."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

from osmo_core.data.credentials import FILE, Masker, match, secret_values, storage_options
from osmo_core.service import Service
from tests.conftest import ServiceFactory

SECRET = "s3cr3t-passw0rd-xyz"
KEY_FILE = "-----BEGIN KEY----- abcdef0123456789"


async def run(service: Service, spec: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    wf_id = await service.submit(spec)
    await asyncio.wait_for(service.wait(wf_id), timeout)
    return service.get(wf_id)


async def test_task_credentials_reach_the_task_and_are_masked_everywhere(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    service = await service_factory(
        credentials={
            "omni": {"user": "alice", "password": SECRET},
            "keys": {"private": KEY_FILE},
        }
    )
    script = (
        'echo "pw=$OMNI_PASS user=$OMNI_USER"; echo "$OMNI_PASS" >&2; '
        "ls /etc/keys; cat /etc/keys/private; echo; "
        "echo len=${#OMNI_PASS}"
    )
    spec = {
        "workflow": {
            "name": "creds",
            "tasks": [
                {
                    "name": "t",
                    "command": ["sh", "-c", script],
                    "credentials": {
                        "omni": {"OMNI_PASS": "password", "OMNI_USER": "user"},
                        "keys": "/etc/keys",
                    },
                }
            ],
        }
    }
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED"
    lines = await service.logs(wf["id"], "t")
    # two pipes: the order within a stream is kept, not the interleaving of the two
    assert [ln.text for ln in lines if ln.stream == "stdout"] == [
        "pw=**** user=alice",  # "alice" is too short to be worth masking
        "private",
        "****",
        f"len={len(SECRET)}",  # the task sees the real value
    ]
    assert [ln.text for ln in lines if ln.stream == "stderr"] == ["****"]
    root = Path(service.config.data_dir)
    attempt = root / "runs" / wf["id"] / "t" / "0"
    assert not (attempt / "credentials").exists()  # the files lived as long as the task
    stored = json.dumps(
        [
            wf,
            service.spec(wf["id"]),
            service.store.events_since(0, wf["id"], limit=1000),
            (attempt / "attempt.json").read_text(),
            (attempt / "log").read_text(),
            (root / "agent.log").read_text(),
        ]
    )
    assert SECRET not in stored and KEY_FILE not in stored
    assert '"omni": {"OMNI_PASS": "password"' in (attempt / "attempt.json").read_text()
    assert stat.S_IMODE(os.stat(root / FILE).st_mode) == 0o600


async def test_a_credential_the_host_lacks_fails_the_task_with_2013(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(credentials={"omni": {"password": SECRET}})
    spec = {
        "workflow": {
            "name": "nocred",
            "tasks": [{"name": "t", "command": ["true"], "credentials": {"omni": "/etc/o"}}],
        }
    }
    loaded = service.load(spec)
    service.config.credentials = {}  # the agent's copy loses it after the submit-time check
    for backend in service.backends.values():
        backend.credentials = {}
        await backend.stop()
        await backend.start(service.engine._on_backend_event)
    wf_id = await service.engine.submit(loaded.workflow, pool="local")
    await asyncio.wait_for(service.wait(wf_id), 30)
    (t,) = service.get(wf_id)["tasks"]
    assert (t["status"], t["exit_code"]) == ("FAILED", 2013)  # OSMO: data credential check failed
    assert t["message"] == "exit code 2013: credential 'omni' is not configured on this host"


async def test_checkpoints_upload_while_the_task_runs_and_at_its_end(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    service = await service_factory()
    dest = tmp_path / "ckpt"
    script = "for i in 1 2 3; do echo $i > /ckpt/step$i; sleep 1.1; done; echo last > /ckpt/final"
    spec = {
        "workflow": {
            "name": "ckpt",
            "tasks": [
                {
                    "name": "t",
                    "command": ["sh", "-c", script],
                    "checkpoint": [{"path": "/ckpt", "url": f"file://{dest}", "frequency": "1s"}],
                }
            ],
        }
    }
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED"
    assert sorted(p.name for p in dest.iterdir()) == ["final", "step1", "step2", "step3"]
    ups = [
        ev["payload"]
        for ev in service.store.events_since(0, wf["id"], limit=1000)
        if ev["type"] == "task.transfer"
    ]
    assert all(u["direction"] == "checkpoint" and "error" not in u for u in ups)
    assert len(ups) >= 3  # periodic ones while it ran, then the final one
    assert ups[-1]["files"] == 4


def test_data_credentials_match_the_longest_url_prefix() -> None:
    creds = {
        "bucket": {"url": "s3://b", "access_key_id": "AKIA1234", "secret_access_key": "sek1sek1"},
        "deeper": {"url": ["s3://b/deep/"], "access_key_id": "AKIA2", "secret_access_key": "x2"},
        "azure": {"url": "az://c", "connection_string": "AccountName=a;AccountKey=Zm9vYmFy;"},
    }
    assert match(creds, "s3://b/x") == "bucket"
    assert match(creds, "s3://b/deep/x") == "deeper"
    assert match(creds, "s3://bb/x") is None  # a prefix ends at a path boundary
    assert storage_options(creds["bucket"], "s3://b/x") == {"key": "AKIA1234", "secret": "sek1sek1"}
    assert storage_options(creds["azure"], "az://c/x") == {
        "connection_string": "AccountName=a;AccountKey=Zm9vYmFy;"
    }
    mask = Masker(secret_values(creds.values()))
    assert mask("key Zm9vYmFy id AKIA1234 sek1sek1 x2 b") == "key **** id **** **** x2 b"
    mask = Masker(secret_values([{"connection_string": "AccountKey=Zm9vYmFyYmF6;X=y"}]))
    assert mask("key=Zm9vYmFyYmF6!") == "key=****!"  # the key inside a connection string


async def test_a_canceled_task_stops_checkpointing(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    service = await service_factory()
    dest = tmp_path / "ckpt"
    spec = {
        "workflow": {
            "name": "ckpt-cancel",
            "tasks": [
                {
                    "name": "t",
                    "command": ["sh", "-c", "echo 1 > /ckpt/state; sleep 60"],
                    "checkpoint": [{"path": "/ckpt", "url": f"file://{dest}", "frequency": "1s"}],
                }
            ],
        }
    }
    wf_id = await service.submit(spec)
    deadline = asyncio.get_running_loop().time() + 20
    while not (dest / "state").exists():
        assert asyncio.get_running_loop().time() < deadline, "no checkpoint was uploaded"
        await asyncio.sleep(0.05)
    await service.cancel(wf_id)
    await asyncio.wait_for(service.wait(wf_id), 15)
    assert service.get(wf_id)["tasks"][0]["status"] == "FAILED_CANCELED"
    stamp = (dest / "state").stat().st_mtime_ns
    await asyncio.sleep(2.5)  # more than two periods: nothing may upload any more
    assert (dest / "state").stat().st_mtime_ns == stamp
