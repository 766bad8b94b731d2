"""Users' own credentials (OSMO's DATA, REGISTRY, GENERIC): sealed at rest, resolved for the
owner's tasks only, used by the data layer for the owner's URLs, and never shown anywhere."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from osmo_core.auth import Principal
from osmo_core.auth.user_credentials import UnsealError, UserCredentials, agent_form, validate
from osmo_core.data.credentials import match, storage_options
from osmo_core.errors import ConfigError, Forbidden, InputError, NotFound, PlacementError
from osmo_core.service import Service
from osmo_core.store import Store
from tests.conftest import ServiceFactory
from tests.data.conftest import BUCKET

pytest.importorskip("s3fs")

ALICE, BOB = Principal("alice"), Principal("bob")
ACCESS_KEY = "alice-s3-secret-0123456789"
TOKEN = "alice-generic-token-abcdef"


def data_payload(endpoint: str, bucket: str = BUCKET) -> dict[str, str]:
    return {
        "endpoint": f"s3://{bucket}/",
        "access_key_id": "alice-key-id",
        "access_key": ACCESS_KEY,
        "override_url": endpoint,  # moto: without it the SDK would ask AWS itself
        "region": "us-east-1",
    }


def spec(prefix: str, script: str) -> dict[str, Any]:
    return {
        "workflow": {
            "name": "own-creds",
            "tasks": [
                {
                    "name": "t",
                    "command": ["sh", "-c", script],
                    "inputs": [{"url": f"s3://{prefix}/in"}],
                    "outputs": [{"url": f"s3://{prefix}/out"}],
                    "credentials": {"tok": {"TOK": "token"}},
                }
            ],
        }
    }


def s3(endpoint: str) -> Any:
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)


async def _cmdlines_while_running(service: Service, wf_id: str) -> list[str]:
    """Every process's argv on this machine, read while the task runs."""
    for _ in range(300):  # bounded: 30 s
        if service.get(wf_id)["tasks"][0]["status"] == "RUNNING":
            break
        await asyncio.sleep(0.1)
    out = []
    for p in psutil.process_iter(["cmdline"]):
        out.append(" ".join(p.info["cmdline"] or []))
    return out


async def test_alice_s_data_credential_moves_her_data_and_bob_cannot_name_it(
    service_factory: ServiceFactory, s3_endpoint: str
) -> None:
    service = await service_factory()
    prefix = f"{BUCKET}/{uuid.uuid4().hex[:8]}"
    s3(s3_endpoint).pipe({f"{prefix}/in/hello.txt": b"hello from s3\n"})
    creds = service.credentials
    creds.set(ALICE, "mys3", "DATA", data_payload(s3_endpoint), "payload")
    creds.set(ALICE, "tok", "GENERIC", {"token": TOKEN}, "payload")

    script = (
        'cat {{input:0}}/hello.txt; echo "tok=$TOK"; cp {{input:0}}/hello.txt {{output}}/; sleep 1'
    )
    wf_id = await service.submit(spec(prefix, script), user="alice", who=ALICE)
    argv = await _cmdlines_while_running(service, wf_id)
    await asyncio.wait_for(service.wait(wf_id), 60)
    wf = service.get(wf_id)
    assert wf["status"] == "COMPLETED", wf
    lines = [ln.text for ln in await service.logs(wf_id, "t") if ln.stream == "stdout"]
    assert lines == ["hello from s3", "tok=****"]  # the task had it; its log masks it
    assert s3(s3_endpoint).cat(f"{prefix}/out/hello.txt") == b"hello from s3\n"  # her upload

    # Bob names the same credential: refused at submit, at the field, nothing created.
    with pytest.raises(PlacementError) as err:
        await service.submit(spec(prefix, "true"), user="bob", who=BOB)
    (problem,) = err.value.problems
    assert problem.field == "workflow.tasks[0].credentials.tok"
    assert "'tok' is not configured" in problem.message and "mys3" not in str(problem)
    assert len(service.list(user="bob")) == 0

    # Nowhere to be read: API records, events, logs, records, argv, the database file.
    root = Path(service.config.data_dir)
    attempt = root / "runs" / wf_id / "t" / "0"
    seen = json.dumps(
        [
            creds.list(ALICE),
            creds.list(Principal("root", "admin"), "*"),
            wf,
            service.store.events_since(0, wf_id, limit=1000),
            (attempt / "attempt.json").read_text(),
            (attempt / "log").read_text(),
            (root / "agent.log").read_text(),
            argv,
        ]
    )
    assert "mys3" in seen and "tok" in seen
    db = b"".join(p.read_bytes() for p in root.glob("*.db*"))
    for secret in (ACCESS_KEY, TOKEN):
        assert secret not in seen
        assert secret.encode() not in db
    assert stat.S_IMODE((root / "secrets.key").stat().st_mode) == 0o600


async def test_a_user_s_own_name_wins_over_the_admin_s(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(credentials={"tok": {"token": "admin-token-value-xyz"}})
    service.credentials.set(ALICE, "tok", "GENERIC", {"token": TOKEN}, "payload")
    task = {"name": "t", "command": ["sh", "-c", 'test "$TOK" = "$WANT" && echo same']}
    task["credentials"] = {"tok": {"TOK": "token"}}
    for who, want in ((ALICE, TOKEN), (BOB, "admin-token-value-xyz")):
        task["environment"] = {"WANT": want}
        doc = {"workflow": {"name": "w", "tasks": [task]}}
        wf_id = await service.submit(doc, user=who.name, who=who)
        await asyncio.wait_for(service.wait(wf_id), 60)
        assert service.get(wf_id)["status"] == "COMPLETED", who


async def test_a_registry_credential_goes_only_with_its_owner_s_image_tasks(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(containers="off")  # the image is named, not pulled
    pw = "ngc-registry-password-42"
    service.credentials.set(ALICE, "ngc", "REGISTRY", {"registry": "nvcr.io", "auth": pw}, "p")
    service.credentials.set(ALICE, "unused", "GENERIC", {"k": "generic-unused-value"}, "p")
    root = Path(service.config.data_dir)
    sent = {}
    for who, image in ((ALICE, "nvcr.io/nvidia/pytorch:24.01"), (ALICE, None), (BOB, "nvcr.io/x")):
        task = {"name": "t", "command": ["true"], **({"image": image} if image else {})}
        wf_id = await service.submit(
            {"workflow": {"name": "w", "tasks": [task]}}, user=who.name, who=who
        )
        await asyncio.wait_for(service.wait(wf_id), 60)
        record = (root / "runs" / wf_id / "t" / "0" / "attempt.json").read_text()
        assert pw not in record and "generic-unused-value" not in record
        sent[(who.name, image is not None)] = json.loads(record)["request"]["secrets"]
    assert sent == {("alice", True): ["ngc"], ("alice", False): [], ("bob", True): []}


def test_osmo_s_data_fields_become_the_sdk_s_options() -> None:
    s3_form = agent_form("DATA", validate("DATA", data_payload("http://minio:9000"), "p"))
    assert storage_options(s3_form, f"s3://{BUCKET}/x") == {
        "key": "alice-key-id",
        "secret": ACCESS_KEY,
        "endpoint_url": "http://minio:9000",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    virtual = {**data_payload("https://caios"), "addressing_style": "virtual"}
    form = agent_form("DATA", validate("DATA", virtual, "p"))
    assert storage_options(form, f"s3://{BUCKET}/x")["config_kwargs"] == {
        "s3": {"addressing_style": "virtual"}
    }
    az = {"endpoint": "az://results", "access_key_id": "acct", "access_key": "azure-key-0123"}
    form = agent_form("DATA", validate("DATA", az, "p"))
    assert storage_options(form, "az://results/x") == {
        "account_name": "acct",
        "account_key": "azure-key-0123",
    }
    assert match({"mine": s3_form}, f"s3://{BUCKET}/deep/x") == "mine"  # the endpoint prefixes
    assert match({"mine": s3_form}, f"s3://{BUCKET}x/y") is None


def test_validation_is_located_and_listing_is_per_user(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'osmo.db'}").open()
    creds = UserCredentials(store, tmp_path / "secrets.key")
    with pytest.raises(InputError) as err:
        creds.set(ALICE, "d", "DATA", {"endpoint": "http://minio:9000", "access_key": "x"}, "p")
    fields = sorted(p.field for p in err.value.problems)
    assert fields == ["p.access_key_id", "p.endpoint"]
    assert "override_url" in next(p.hint for p in err.value.problems if p.field == "p.endpoint")
    with pytest.raises(InputError) as err:
        creds.set(ALICE, "r", "REGISTRY", {"registry": "nvcr.io", "pasword": "x"}, "p")
    assert sorted(p.field for p in err.value.problems) == ["p.auth", "p.pasword"]
    with pytest.raises(InputError) as err:
        creds.set(ALICE, "9bad", "GENERIC", {"k": "v"}, "p")
    assert err.value.problems[0].field == "name"
    with pytest.raises(InputError) as err:
        creds.set(ALICE, "g", "SSH", {"k": "v"}, "p")
    assert err.value.problems[0].field == "type"

    # OSMO's `password` is `auth`; one registry per user: a second name for it replaces the first
    creds.set(ALICE, "ngc", "REGISTRY", {"registry": "nvcr.io", "password": "pw-123456789"}, "p")
    creds.set(ALICE, "ngc2", "REGISTRY", {"registry": "nvcr.io", "auth": "pw-987654321"}, "p")
    creds.set(BOB, "ngc", "REGISTRY", {"registry": "nvcr.io", "auth": "bob-pw-1234567"}, "p")
    assert [(r["name"], r["fields"]) for r in creds.list(ALICE)] == [
        ("ngc2", {"registry": "nvcr.io"})
    ]
    assert creds.for_launch("alice")["ngc2"] == (
        "REGISTRY",
        {"registry": "nvcr.io", "auth": "pw-987654321"},
    )
    with pytest.raises(Forbidden):
        creds.list(ALICE, "bob")
    with pytest.raises(Forbidden):
        creds.delete(ALICE, "ngc", "bob")
    admin = Principal("root", "admin")
    assert [(r["user"], r["name"]) for r in creds.list(admin, "*")] == [
        ("alice", "ngc2"),
        ("bob", "ngc"),
    ]
    assert creds.delete(ALICE, "ngc2")["name"] == "ngc2"
    with pytest.raises(NotFound):
        creds.delete(ALICE, "ngc2")

    # A replaced key cannot open what the old one sealed, and says so; a truncated key is refused.
    (tmp_path / "secrets.key").write_bytes(b"\x01" * 32)
    fresh = UserCredentials(store, tmp_path / "secrets.key")
    with pytest.raises(UnsealError, match="set it again"):
        fresh.for_launch("bob")
    assert [r["name"] for r in fresh.list(BOB)] == ["ngc"]  # names survive
    (tmp_path / "secrets.key").write_bytes(b"short")
    with pytest.raises(ConfigError, match=r"secrets\.key"):
        UserCredentials(store, tmp_path / "secrets.key").for_launch("bob")
    store.close()
