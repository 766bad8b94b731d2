"""Fixtures for the data layer: a real S3-compatible server (moto, on loopback) and one fresh
dataset store per test on each storage kind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from osmo_core.data import DatasetStore

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "osmo-test"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (port 0), fake credentials in the environment, a bucket."""
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True).mkdir(BUCKET)
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


StoreFactory = Callable[..., DatasetStore]


@pytest.fixture(params=["local", "memory", "s3"])
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
