"""Data in and out of tasks through real workflows: the engine, the local backend, the real
agent and real storage servers on loopback (moto for S3, Azurite for Azure Blob, folders)."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from osmo_core.data.datasets import DatasetStore
from osmo_core.errors import PlacementError
from osmo_core.exit_codes import ExitCode
from osmo_core.service import Service
from tests.conftest import ServiceFactory
from tests.data.conftest import AZURITE_KEY, BUCKET, azurite_connection_string

pytest.importorskip("s3fs")


async def run(service: Service, spec: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    wf_id = await service.submit(spec)
    await asyncio.wait_for(service.wait(wf_id), timeout)
    return service.get(wf_id)


def task(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": ["sh", "-c", script], **extra}


def only(wf: dict[str, Any], name: str) -> dict[str, Any]:
    (t,) = [t for t in wf["tasks"] if t["name"] == name]
    return t


async def log_of(service: Service, wf_id: str, name: str) -> list[tuple[str, str]]:
    return [(ln.stream, ln.text) for ln in await service.logs(wf_id, name)]


def transfers(service: Service, wf_id: str) -> list[dict[str, Any]]:
    return [
        ev["payload"]
        for ev in service.store.events_since(0, wf_id, limit=10_000)
        if ev["type"] == "task.transfer"
    ]


def s3(endpoint: str) -> Any:
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)


def azure(endpoint: str, key: str = AZURITE_KEY) -> Any:
    import adlfs

    return adlfs.AzureBlobFileSystem(
        connection_string=azurite_connection_string(endpoint, key), skip_instance_cache=True
    )


def s3_credential(endpoint: str, bucket: str = BUCKET) -> dict[str, str]:
    return {
        "url": f"s3://{bucket}",
        "endpoint_url": endpoint,
        "access_key_id": "testing-key-id",
        "secret_access_key": "testing-secret-key",
    }


@pytest.fixture
def container(azurite: str) -> str:
    name = f"c{uuid.uuid4().hex[:12]}"
    azure(azurite).mkdir(name)
    return name


async def test_a_task_reads_s3_and_writes_azure_and_a_folder(
    service_factory: ServiceFactory, s3_endpoint: str, azurite: str, container: str, tmp_path: Path
) -> None:
    prefix = f"{BUCKET}/{uuid.uuid4().hex[:8]}/images"
    s3(s3_endpoint).pipe(
        {f"{prefix}/a.png": b"A", f"{prefix}/sub/b.png": b"BB", f"{prefix}/notes.txt": b"no"}
    )
    cs = azurite_connection_string(azurite)
    service = await service_factory(
        credentials={
            "raw": s3_credential(s3_endpoint),
            "results": {"url": f"az://{container}", "connection_string": cs},
        }
    )
    folder = tmp_path / "out"
    spec = {
        "workflow": {
            "name": "io",
            "tasks": [
                task(
                    "prep",
                    "cd {{input:0}} && find . -type f | sort > {{output}}/list.txt"
                    " && cat sub/b.png > {{output}}/b.copy",
                    inputs=[{"url": f"s3://{prefix}/", "regex": r".*\.png$"}],
                    outputs=[
                        {"url": f"az://{container}/prep/{{{{workflow_id}}}}"},
                        {"url": f"file://{folder}"},
                    ],
                ),
            ],
        }
    }
    wf = await run(service, spec)
    assert (wf["status"], only(wf, "prep")["exit_code"]) == ("COMPLETED", 0)
    listing = b"./a.png\n./sub/b.png\n"
    assert azure(azurite).cat(f"{container}/prep/{wf['id']}/list.txt") == listing
    assert azure(azurite).cat(f"{container}/prep/{wf['id']}/b.copy") == b"BB"
    assert (folder / "list.txt").read_bytes() == listing
    done = transfers(service, wf["id"])
    assert [(t["direction"], t["url"], t["files"], t["bytes"]) for t in done] == [
        ("download", f"s3://{prefix}/", 2, 3),
        ("upload", f"az://{container}/prep/{wf['id']}", 2, len(listing) + 2),
        ("upload", f"file://{folder}", 2, len(listing) + 2),
    ]
    assert all(t["seconds"] >= 0 and "error" not in t for t in done)
    lines = await log_of(service, wf["id"], "prep")
    system = [text for stream, text in lines if stream == "system"]
    assert system[0] == f"downloading s3://{prefix}/"
    assert system[1].startswith("download done: 2 files, 3 B in ")


async def test_datasets_in_and_out_of_a_workflow(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    store_url = str(tmp_path / "datasets")
    store = DatasetStore(store_url)
    src = tmp_path / "calib"
    (src / "cam").mkdir(parents=True)
    (src / "cam" / "k.txt").write_text("intrinsics\n")
    (src / "readme.md").write_text("calibration\n")
    store.upload("calib", [str(src)], tag="v3")
    service = await service_factory(dataset_store=store_url)
    spec = {
        "workflow": {
            "name": "ds",
            "tasks": [
                task(
                    "prep",
                    "find {{input:0}} -type f | sed 's|{{input:0}}/||' | sort"
                    " && tr a-z A-Z < {{input:0}}/cam/k.txt > {{output}}/k.upper",
                    inputs=[{"dataset": {"name": "calib:v3", "regex": r"\.txt$"}}],
                    outputs=[{"dataset": {"name": "prepped:first"}}],
                ),
                task("use", "cat {{input:0}}/k.upper", inputs=[{"task": "prep"}]),
            ],
        }
    }
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED"
    assert (await log_of(service, wf["id"], "prep"))[2] == ("stdout", "cam/k.txt")
    assert ("stdout", "INTRINSICS") in await log_of(service, wf["id"], "use")
    info = store.info("prepped")
    assert [(v.version, v.files, v.tags) for v in info.versions] == [(1, 1, ["first"])]
    out = tmp_path / "check"
    store.download("prepped:first", str(out))
    assert (out / "k.upper").read_text() == "INTRINSICS\n"
    moved = [(t["direction"], t.get("dataset"), t["files"]) for t in transfers(service, wf["id"])]
    assert moved == [("download", "calib:v3", 1), ("upload", "prepped:first", 1)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again once we return


@pytest.mark.parametrize(
    "case", ["missing bucket", "missing output bucket", "unreachable endpoint", "bad credentials"]
)
async def test_a_failed_transfer_fails_the_task_with_its_code_and_the_url(
    case: str,
    service_factory: ServiceFactory,
    s3_endpoint: str,
    azurite: str,
    container: str,
    tmp_path: Path,
) -> None:
    bad_key = "QmFkS2V5" + AZURITE_KEY[8:]  # well-formed, wrong
    creds: dict[str, Any] = {}
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    if case == "missing bucket":
        url = "s3://no-such-bucket/data/"
        creds["s3"] = s3_credential(s3_endpoint, "no-such-bucket")
        inputs.append({"url": url})
        code, error = ExitCode.DOWNLOAD_FAILED, "The specified bucket does not exist"
    elif case == "missing output bucket":
        url = "s3://no-such-bucket/out"
        creds["s3"] = s3_credential(s3_endpoint, "no-such-bucket")
        outputs.append({"url": url})
        code, error = ExitCode.UPLOAD_FAILED, "The specified bucket does not exist"
    elif case == "unreachable endpoint":
        url = f"s3://{BUCKET}/x/"
        creds["s3"] = s3_credential(f"http://127.0.0.1:{_closed_port()}")
        inputs.append({"url": url})
        code, error = ExitCode.DOWNLOAD_FAILED, "Could not connect to the endpoint URL"
    else:
        url = f"az://{container}/out"
        cs = azurite_connection_string(azurite, bad_key)
        creds["az"] = {"url": f"az://{container}", "connection_string": cs}
        outputs.append({"url": url})
        code, error = ExitCode.DATA_UNAUTHORIZED, "AuthorizationFailure"
    service = await service_factory(credentials=creds)
    spec = {
        "workflow": {
            "name": "fails",
            "tasks": [
                task("t", "echo ran > {{output}}/x", inputs=inputs, outputs=outputs),
                task("after", "true", inputs=[{"task": "t"}]),
            ],
        }
    }
    wf = await run(service, spec, timeout=90)
    t = only(wf, "t")
    assert (wf["status"], t["status"], t["exit_code"]) == ("FAILED", "FAILED", code)
    assert only(wf, "after")["status"] == "FAILED_UPSTREAM"
    assert t["message"].startswith(f"exit code {int(code)}: ")
    assert url in t["message"] and error in t["message"]
    lines = await log_of(service, wf["id"], "t")
    assert ("system", t["message"].split(": ", 1)[1]) in lines
    ran = ("stdout", "ran") not in lines  # the command's output went to a file, never the log
    assert ran
    (failed,) = [x for x in transfers(service, wf["id"]) if "error" in x]
    assert failed["url"] == url and error in failed["error"]
    everything = json.dumps([wf, lines, transfers(service, wf["id"])])
    assert bad_key not in everything and "testing-secret-key" not in everything


async def test_a_missing_dataset_ends_the_task_with_2010(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    service = await service_factory(dataset_store=str(tmp_path / "datasets"))
    spec = {
        "workflow": {
            "name": "nods",
            "tasks": [task("t", "true", inputs=[{"dataset": {"name": "nothing:v1"}}])],
        }
    }
    wf = await run(service, spec)
    t = only(wf, "t")
    assert (wf["status"], t["exit_code"]) == ("FAILED", ExitCode.DOWNLOAD_FAILED)
    assert "dataset nothing:v1" in t["message"] and "has no tag v1" in t["message"]


async def test_exit_actions_may_retry_a_failed_download(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    service = await service_factory()
    missing = tmp_path / "later"
    spec = {
        "workflow": {
            "name": "retry",
            "tasks": [
                task(
                    "t",
                    "cat {{input:0}}/f",
                    inputs=[{"url": str(missing)}],
                    exitActions={"RESCHEDULE": "2010"},
                    maxRetries=1,
                )
            ],
        }
    }
    wf = await run(service, spec)
    assert [(t["retry_id"], t["exit_code"]) for t in wf["tasks"]] == [(0, 2010), (1, 2010)]
    assert wf["status"] == "FAILED"


async def test_bad_data_fields_are_refused_at_submit_naming_the_field(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(credentials={"omni": {"user": "u", "password": "p4ssw0rd"}})
    spec = {
        "workflow": {
            "name": "bad",
            "tasks": [
                task(
                    "t",
                    "true",
                    inputs=[
                        {"url": "gs://b/x"},
                        {"dataset": {"name": "../up"}},
                        {"dataset": {"name": "ok", "path": "sub", "metadata": ["m.yaml"]}},
                    ],
                    outputs=[{"dataset": {"name": "out:3"}}, {"url": "s3:///nobucket"}],
                    credentials={"nope": {"X": "y"}, "omni": {"PW": "pass"}},
                )
            ],
        }
    }
    with pytest.raises(PlacementError) as err:
        await service.submit(spec)
    found = {p.field: p.message for p in err.value.problems}
    t = "workflow.tasks[0]"
    assert set(found) == {
        f"{t}.inputs[0].url",
        f"{t}.inputs[1].dataset.name",
        f"{t}.outputs[0].dataset.name",
        f"{t}.outputs[1].url",
        f"{t}.credentials.nope",
        f"{t}.credentials.omni.PW",
        f"{t}.inputs[2].dataset.path",
        f"{t}.inputs[2].dataset.metadata",
    }
    assert found[f"{t}.inputs[2].dataset.path"] == "`path` of a dataset is not supported here"
    assert found[f"{t}.inputs[0].url"] == "unsupported storage URL 'gs://b/x'"
    assert found[f"{t}.credentials.omni.PW"] == "credential 'omni' has no key 'pass' (for $PW)"


async def test_cancel_during_a_download_that_never_answers_ends_the_task_at_once(
    service_factory: ServiceFactory,
) -> None:
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        service = await service_factory(credentials={"s3": s3_credential(endpoint)})
        spec = {
            "workflow": {
                "name": "hang",
                "tasks": [task("t", "true", inputs=[{"url": f"s3://{BUCKET}/x/"}])],
            }
        }
        wf_id = await service.submit(spec)
        deadline = asyncio.get_running_loop().time() + 20
        while ("system", f"downloading s3://{BUCKET}/x/") not in await log_of(service, wf_id, "t"):
            assert asyncio.get_running_loop().time() < deadline, "the download never started"
            await asyncio.sleep(0.05)
        await service.cancel(wf_id)
        await asyncio.wait_for(service.wait(wf_id), 10)
        t = only(service.get(wf_id), "t")
        assert (t["status"], t["exit_code"]) == ("FAILED_CANCELED", 143)
        assert ("system", "canceled while downloading inputs") in await log_of(service, wf_id, "t")
    finally:
        silent.close()


async def test_a_long_download_reports_progress_live_and_its_total_once(
    service_factory: ServiceFactory, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSMO_TRANSFER_PROGRESS_SECONDS", "0")  # the agent inherits it
    prefix = f"{BUCKET}/{uuid.uuid4().hex[:8]}/many"
    s3(s3_endpoint).pipe({f"{prefix}/f{i:02d}": b"x" * (i + 1) for i in range(30)})
    service = await service_factory(credentials={"s3": s3_credential(s3_endpoint)})
    sub = service.subscribe(logs=False)
    spec = {
        "workflow": {
            "name": "progress",
            "tasks": [task("t", "ls {{input:0}} | wc -l", inputs=[{"url": f"s3://{prefix}"}])],
        }
    }
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED"
    live = []
    while True:  # what the bus delivered during the run
        try:
            ev = await asyncio.wait_for(sub.get(), 0.2)
        except asyncio.TimeoutError:
            break
        if getattr(ev, "type", None) == "task.transfer.progress":
            live.append(ev.payload)
    sub.close()
    assert live, "no progress event"
    assert all(p["files_total"] == 30 and p["bytes_total"] == 465 for p in live)
    assert all(0 < p["files"] < 30 and 0 < p["bytes"] < 465 for p in live)
    assert [p["files"] for p in live] == sorted(p["files"] for p in live)
    (final,) = transfers(service, wf["id"])  # the store keeps the total only
    assert (final["files"], final["bytes"]) == (30, 465)
