"""Storage URLs → filesystems; create-exclusive writes; credential masking."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from osmo_core.data.storage import StorageError, create_exclusive, open_store, redact


def test_plain_path_and_file_url(tmp_path: Path) -> None:
    fs, root = open_store(str(tmp_path / "a"))
    assert root == str(tmp_path / "a") and "file" in fs.protocol
    _, root2 = open_store(f"file://{tmp_path}/b/")
    assert root2 == str(tmp_path / "b")


def test_memory_and_s3_roots(s3_endpoint: str) -> None:
    _, root = open_store("memory://x/y/")
    assert root == "/x/y"
    fs, root = open_store("s3://osmo-test/some/prefix/", endpoint_url=s3_endpoint)
    assert root == "osmo-test/some/prefix"
    fs.pipe_file(f"{root}/k", b"v")
    assert fs.cat_file(f"{root}/k") == b"v"


@pytest.mark.skipif(importlib.util.find_spec("adlfs") is not None, reason="adlfs is installed")
def test_missing_extra_names_it() -> None:
    with pytest.raises(StorageError, match=r"pip install 'osmo-jupyter\[azure\]'"):
        open_store("az://container/x")


@pytest.mark.parametrize("kind", ["local", "memory", "s3"])
def test_create_exclusive(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "local":
        fs, root = open_store(str(tmp_path))
    elif kind == "memory":
        fs, root = open_store(f"memory://excl-{tmp_path.name}")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        fs, root = open_store(f"s3://osmo-test/excl-{tmp_path.name}", endpoint_url=endpoint)
    path = f"{root}/v/1.json"
    assert create_exclusive(fs, path, b"first")
    assert not create_exclusive(fs, path, b"second")
    assert fs.cat_file(path) == b"first"


def test_redact() -> None:
    assert redact("s3://AKIA:supersecret@host/x") == "s3://AKIA:***@host/x"
    assert "hunter2" not in redact("AccountKey=hunter2;EndpointSuffix=x")
    assert "abc" not in redact("aws_secret_access_key = abc")
