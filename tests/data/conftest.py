"""Fixtures for the data layer: real storage servers on loopback (moto for S3, Azurite for
Azure Blob) and one fresh dataset store per test on each storage kind."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from osmo_core.data.datasets import DatasetStore

# the S3 server (moto) is tests/conftest.py's: the Kubernetes tests use it too
from tests.conftest import BUCKET, free_port

REPO = Path(__file__).resolve().parents[2]
# Azurite's well-known development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_START_TIMEOUT = 30.0

StoreFactory = Callable[..., DatasetStore]


@pytest.fixture(params=["local", "memory", "s3", "azure"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, dict]:
    """(url, options) of an empty store of `kind`."""
    unique = uuid.uuid4().hex[:12]
    if kind == "local":
        return str(tmp_path / "store"), {}
    if kind == "memory":
        return f"memory://osmo-{unique}", {}
    if kind == "azure":
        endpoint = request.getfixturevalue("azurite")
        options = {"connection_string": azurite_connection_string(endpoint)}
        DatasetStore(f"az://c{unique}", **options).fs.mkdir(f"c{unique}")
        return f"az://c{unique}/datasets", options
    endpoint = request.getfixturevalue("s3_endpoint")
    return f"s3://{BUCKET}/{unique}/datasets", {"endpoint_url": endpoint}


@pytest.fixture
def make_store(store_url: tuple[str, dict]) -> Iterator[StoreFactory]:
    url, options = store_url
    made: list[DatasetStore] = []

    def factory(**kw: Any) -> DatasetStore:
        s = DatasetStore(url, **options, **kw)
        made.append(s)
        return s

    yield factory
    if url.startswith("memory://"):
        for s in made[:1]:
            if s.fs.exists(s.root):
                s.fs.rm(s.root, recursive=True)


@pytest.fixture
def store(make_store: StoreFactory) -> DatasetStore:
    return make_store()


def _azurite_blob() -> str | None:
    local = REPO / ".ci" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    return shutil.which("azurite-blob") or (str(local) if local.exists() else None)


def azurite_connection_string(endpoint: str, key: str = AZURITE_KEY) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
        f"BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};"
    )


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service (npm `azurite`, installed by .ci/run) on 127.0.0.1, in memory;
    yields its endpoint (http://127.0.0.1:PORT)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: Azurite (the Azure Blob emulator) needs it")
    exe = _azurite_blob()
    if exe is None:
        pytest.fail(
            "azurite-blob not found: run .ci/run, or "
            "npm install --prefix .ci/azurite --no-save azurite@3"
        )
    port = free_port()
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    argv = [exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence"]
    argv += ["--skipApiVersionCheck", "--loose", "--disableTelemetry"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + AZURITE_START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"Azurite did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
