"""`osmo dataset ...` end to end: argparse → run_dataset → a real store; one subprocess run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from osmo_core.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object, str]:
    code = main(["dataset", *args])
    cap = capsys.readouterr()
    try:
        data = json.loads(cap.out) if cap.out.strip() else None
    except json.JSONDecodeError:
        data = cap.out
    return code, data, cap.err


@pytest.fixture
def store_args(kind: str, store_url: tuple[str, dict]) -> list[str]:
    url, options = store_url
    extra = ["--endpoint-url", options["endpoint_url"]] if "endpoint_url" in options else []
    return ["--store", url, *extra, "--format", "json"]


@pytest.mark.parametrize("kind", ["local", "s3"], indirect=True)
def test_dataset_commands(capsys, store_args: list[str], tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub/b.txt").write_text("b")

    code, v, _ = run(capsys, "upload", "calib", str(src), "--tag", "v1", *store_args)
    assert code == 0 and v["version"] == 1 and v["stats"]["transferred_bytes"] == 2
    (src / "a.txt").write_text("A2")
    code, v, _ = run(capsys, "upload", "calib", str(src), *store_args)
    assert code == 0 and v["version"] == 2 and v["stats"]["skipped_bytes"] == 1

    assert run(capsys, "tag", "calib:2", "good", *store_args)[0] == 0
    code, rows, _ = run(capsys, "list", *store_args)
    assert rows == [{"name": "calib", "versions": 2, "latest": 2, "tags": {"good": 2, "v1": 1}}]
    code, info, _ = run(capsys, "info", "calib", *store_args)
    assert [(x["version"], x["files"], x["size"]) for x in info["versions"]] == [
        (1, 2, 2),
        (2, 2, 3),
    ]
    code, d, _ = run(capsys, "diff", "calib:v1", "calib:good", *store_args)
    assert d["changed"] == ["a.txt"] and d["added"] == d["removed"] == []

    code, s, _ = run(capsys, "download", "calib:v1", str(tmp_path / "out"), *store_args)
    assert code == 0 and s["transferred_files"] == 2
    assert (tmp_path / "out/a.txt").read_text() == "a"

    code, r, _ = run(capsys, "delete", "calib:1", *store_args)
    assert code == 0 and r == {"name": "calib", "deleted_versions": [1]}
    code, g, _ = run(capsys, "gc", "--grace", "0", *store_args)
    assert code == 0 and g["blobs_removed"] == 1

    # exit codes: 2 invalid input, 4 not found
    code, err, _ = run(capsys, "upload", "../evil", str(src), *store_args)
    assert code == 2 and err["error"] == "invalid input" and "invalid dataset name" in str(err)
    code, err, _ = run(capsys, "tag", "calib:latest", "x", *store_args)
    assert code == 2 and "NAME:VERSION" in str(err)
    code, err, _ = run(capsys, "download", "calib:9", str(tmp_path / "o2"), *store_args)
    assert code == 4 and "no version 9" in err["error"]


def test_storage_failure_exits_1(capsys, s3_endpoint: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    code, _, err = run(
        capsys,
        "upload",
        "ds",
        str(tmp_path / "f"),
        "--store",
        "s3://no-such-bucket/x",
        "--endpoint-url",
        s3_endpoint,
    )
    assert code == 1 and "StorageError" in err and "no-such-bucket" in err


def test_dataset_commands_leave_the_control_plane_alone(
    capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A store elsewhere: the data directory is not even created (no Service is built, which
    would open the control plane's store and folders)."""
    monkeypatch.setenv("OSMO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    code, rows, _ = run(capsys, "list", "--store", str(tmp_path / "store"), "--format", "json")
    assert code == 0 and rows == []
    assert not (tmp_path / "home").exists()


def test_default_store_in_data_dir_subprocess(tmp_path: Path) -> None:
    """The text output and the default store (<data dir>/datasets) through a real process."""
    env = {**os.environ, "OSMO_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path)}
    env.pop("OSMO_DATASET_STORE", None)
    (tmp_path / "f.txt").write_text("hello")
    cmd = [sys.executable, "-m", "osmo_core.cli", "dataset"]
    up = subprocess.run(
        [*cmd, "upload", "ds", str(tmp_path / "f.txt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith("ds:1: 1 files: sent 1 (5 B)")
    assert (tmp_path / "home/datasets/datasets/ds/versions/1.json").exists()
    ls = subprocess.run([*cmd, "info", "ds"], env=env, capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0 and "ds: 1 versions, latest 1" in ls.stdout
    bad = subprocess.run(
        [*cmd, "info", "no/such"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "invalid dataset name" in bad.stderr
