"""data/transfer.py on its own: what a url input or output moves, and how it fails."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from osmo_core.data.transfer import TransferError, download_url, upload_dir
from osmo_core.exit_codes import ExitCode
from tests.data.conftest import BUCKET, azurite_connection_string


def test_a_folder_round_trips_through_s3_with_a_regex_and_progress(
    s3_endpoint: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "top.png").write_bytes(b"1")
    (src / "a" / "b" / "deep.png").write_bytes(b"22")
    (src / "a" / "skip.txt").write_bytes(b"333")
    url = f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/run"
    options = {"endpoint_url": s3_endpoint}
    seen: list[tuple[int, int, int, int]] = []
    up = upload_dir(src, url, None, options, lambda *p: seen.append(p))
    assert (up.transferred_files, up.transferred_bytes) == (3, 6)
    assert sorted(seen)[-1] == (3, 6, 3, 6)  # the last report covers everything
    down = download_url(url, tmp_path / "in", r"\.png$", options)
    assert (down.transferred_files, down.transferred_bytes) == (2, 3)
    assert (tmp_path / "in" / "a" / "b" / "deep.png").read_bytes() == b"22"
    assert not (tmp_path / "in" / "a" / "skip.txt").exists()
    one = download_url(f"{url}/a/b/deep.png", tmp_path / "one", None, options)  # one object
    assert one.transferred_files == 1 and (tmp_path / "one" / "deep.png").read_bytes() == b"22"


def test_nothing_at_the_url_is_a_download_failure(s3_endpoint: str, tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/empty/"
    with pytest.raises(TransferError) as err:
        download_url(url, tmp_path / "in", None, {"endpoint_url": s3_endpoint})
    assert err.value.code == ExitCode.DOWNLOAD_FAILED
    assert str(err.value) == f"download of {url} failed: FileNotFoundError: no objects at {url}"


def test_a_secret_in_the_url_is_redacted_in_the_error(azurite: str, tmp_path: Path) -> None:
    url = "az://no-such-container/x?sig=SUPERSECRETSIGNATURE"
    options = {"connection_string": azurite_connection_string(azurite)}
    (tmp_path / "f").write_text("x")
    with pytest.raises(TransferError) as err:
        upload_dir(tmp_path, url, None, options)
    assert err.value.code == ExitCode.UPLOAD_FAILED
    assert "SUPERSECRETSIGNATURE" not in str(err.value) and "sig=***" in str(err.value)
