"""Datasets on a local folder, memory:// and a real S3 server (moto): the same scenarios."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest

from osmo_core.data.datasets import LIST_FROM, DatasetStore
from osmo_core.data.refs import parse_ref, validate_path
from osmo_core.data.storage import StorageError
from osmo_core.errors import InputError, NotFound


def write_tree(root: Path, files: dict[str, bytes | str], modes: dict[str, int] | None = None):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    for rel, mode in (modes or {}).items():
        (root / rel).chmod(mode)
    return root


def read_tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def blobs(store: DatasetStore) -> set[str]:
    try:
        return {
            p.rsplit("/", 2)[-2] + p.rsplit("/", 1)[-1]
            for p in store.fs.find(f"{store.root}/blobs")
        }
    except FileNotFoundError:
        return set()


def tree_of(n: int, size: int, seed: int = 0) -> dict[str, bytes]:
    return {f"d{i % 3}/f{i:03d}.bin": os.urandom(size) for i in range(n)}


# --- round trips, dedup ----------------------------------------------------------------------


def test_round_trip_keeps_bytes_and_modes(store: DatasetStore, tmp_path: Path) -> None:
    files = {
        "run.sh": "#!/bin/sh\necho hi\n",
        "secret.key": b"\x00\x01\x02" * 1000,
        "nested/deep/a.bin": os.urandom(300_000),
        "nested/copy.bin": b"same",
        "other/copy.bin": b"same",
        "empty": b"",
    }
    src = write_tree(tmp_path / "src", files, {"run.sh": 0o755, "secret.key": 0o600})
    v = store.upload("calib", [str(src)], tag="v1")
    assert (v.version, v.files, v.tags) == (1, 6, ["v1"])
    assert v.size == sum(len(d if isinstance(d, bytes) else d.encode()) for d in files.values())
    assert v.stats and v.stats.transferred_files == 5 and v.stats.skipped_files == 1  # copy dedup

    s = store.download("calib:v1", str(tmp_path / "out"))
    assert s.transferred_files == 6 and s.transferred_bytes == v.size
    assert read_tree(tmp_path / "out") == read_tree(src)
    assert read_tree(tmp_path / "out")["run.sh"][1] == 0o755
    assert read_tree(tmp_path / "out")["secret.key"][1] == 0o600


def test_unchanged_reupload_sends_nothing_and_ten_percent_change_sends_ten_percent(
    store: DatasetStore, tmp_path: Path
) -> None:
    src = write_tree(tmp_path / "src", tree_of(20, 20_000))
    first = store.upload("ds", [str(src)])
    assert first.stats and first.stats.transferred_bytes == 400_000

    again = store.upload("ds", [str(src)])
    assert again.version == 2
    assert again.stats and again.stats.transferred_bytes == 0
    assert again.stats.skipped_bytes == 400_000
    assert store.diff("ds:1", "ds:2").to_dict()["changed"] == []

    for rel in ("d0/f000.bin", "d1/f010.bin"):  # 2 of 20 files = 10% of the bytes
        (src / rel).write_bytes(os.urandom(20_000))
    third = store.upload("ds", [str(src)])
    assert third.stats and third.stats.transferred_bytes == 40_000
    assert third.stats.transferred_files == 2
    assert store.diff("ds:2", "ds:3").changed == ["d0/f000.bin", "d1/f010.bin"]


def test_a_large_upload_lists_the_store_once_and_still_sends_only_new_blobs(
    store: DatasetStore, tmp_path: Path
) -> None:
    n = LIST_FROM + 6  # object stores switch from one check per blob to one listing
    src = write_tree(tmp_path / "src", tree_of(n, 100))
    (src / "dup.bin").write_bytes((src / "d0" / "f000.bin").read_bytes())  # same blob twice
    first = store.upload("big", [str(src)])
    assert first.stats and (first.stats.transferred_files, first.stats.skipped_files) == (n, 1)
    (src / "d0" / "f000.bin").write_bytes(os.urandom(100))
    again = store.upload("big", [str(src)])
    assert again.stats and (again.stats.transferred_files, again.stats.skipped_files) == (1, n)
    out = tmp_path / "out"
    store.download("big:2", str(out))
    assert (out / "d0" / "f000.bin").read_bytes() == (src / "d0" / "f000.bin").read_bytes()


def test_files_and_mapping_arguments(store: DatasetStore, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.txt": "a", "dir/b.txt": "b"})
    v = store.upload("mixed", [str(src / "a.txt"), str(src / "dir")])
    assert sorted(store.files("mixed:1")) == ["a.txt", "b.txt"]
    store.upload("mapped", {"x/y/a.txt": str(src / "a.txt")})
    assert sorted(store.files("mapped")) == ["x/y/a.txt"]
    assert v.version == 1
    with pytest.raises(InputError, match=r"two files map to 'a\.txt'"):
        store.upload("dup", [str(src / "a.txt"), str(src)])
    with pytest.raises(InputError, match="no such file"):
        store.upload("missing", [str(src / "nope")])


def test_download_skips_matching_local_files(store: DatasetStore, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", tree_of(10, 10_000))
    store.upload("ds", [str(src)])
    dest = tmp_path / "dest"
    assert store.download("ds", str(dest)).transferred_files == 10
    (dest / "d0/f000.bin").write_bytes(b"edited locally")
    (dest / "extra.txt").write_text("mine")
    (dest / "d1/f001.bin").chmod(0o700)
    s = store.download("ds", str(dest))
    assert (s.transferred_files, s.skipped_files) == (1, 9)
    assert s.transferred_bytes == 10_000 and s.skipped_bytes == 90_000
    assert (dest / "d0/f000.bin").read_bytes() == (src / "d0/f000.bin").read_bytes()
    assert (dest / "d1/f001.bin").stat().st_mode & 0o777 == (
        src / "d1/f001.bin"
    ).stat().st_mode & 0o777
    assert (dest / "extra.txt").read_text() == "mine"


# --- versions, tags, diff, delete, gc ----------------------------------------------------------


def test_versions_tags_latest_info_list(store: DatasetStore, tmp_path: Path) -> None:
    for i in range(3):
        write_tree(tmp_path / f"v{i}", {f"f{j}": f"{i}-{j}" for j in range(i + 1)})
        store.upload("ds", [str(tmp_path / f"v{i}")], tag="first" if i == 0 else None)
    store.upload("other", [str(tmp_path / "v0")])
    store.tag("ds", 2, "good")
    store.tag("ds", 3, "good")  # a tag moves
    store.tag("ds", 1, "stable")

    assert sorted(store.files("ds")) == ["f0", "f1", "f2"]  # latest = 3
    assert sorted(store.files("ds:latest")) == ["f0", "f1", "f2"]
    assert sorted(store.files("ds:2")) == ["f0", "f1"]
    assert sorted(store.files("ds:good")) == ["f0", "f1", "f2"]
    assert sorted(store.files("ds:stable")) == ["f0"]

    info = store.info("ds")
    assert info.latest == 3
    assert info.tags == {"first": 1, "good": 3, "stable": 1}
    assert [(v.version, v.files, v.size, v.tags) for v in info.versions] == [
        (1, 1, 3, ["first", "stable"]),
        (2, 2, 6, []),
        (3, 3, 9, ["good"]),
    ]
    assert [(d.name, d.versions, d.latest) for d in store.list()] == [("ds", 3, 3), ("other", 1, 1)]

    with pytest.raises(NotFound, match="no version 9"):
        store.tag("ds", 9, "x")
    with pytest.raises(NotFound, match="no tag nope"):
        store.files("ds:nope")
    with pytest.raises(NotFound, match="no dataset named ghost"):
        store.info("ghost")
    for bad in ("latest", "12", "-x", "a/b"):
        with pytest.raises(InputError, match="invalid tag"):
            store.tag("ds", 1, bad)


def test_diff(store: DatasetStore, tmp_path: Path) -> None:
    a = write_tree(tmp_path / "a", {"same": "1", "changed": "old", "gone": "x", "mode": "m"})
    store.upload("ds", [str(a)])
    (a / "changed").write_text("new")
    (a / "gone").unlink()
    (a / "new").write_text("n")
    (a / "mode").chmod(0o751)
    store.upload("ds", [str(a)])
    d = store.diff("ds:1", "ds:2")
    assert (d.added, d.removed, d.changed) == (["new"], ["gone"], ["changed", "mode"])
    assert store.diff("ds:2", "ds:1").added == ["gone"]


def test_delete_and_gc_remove_only_unreferenced(store: DatasetStore, tmp_path: Path) -> None:
    v1 = write_tree(tmp_path / "v1", {"a": "shared", "b": "only in v1"})
    v2 = write_tree(tmp_path / "v2", {"a": "shared", "c": "only in v2"})
    store.upload("ds", [str(v1)], tag="old")
    store.upload("ds", [str(v2)])
    store.upload("keep", [str(v1 / "b")])  # 'b' is referenced by another dataset too
    store.upload("tmp", [str(write_tree(tmp_path / "t", {"t": "temporary"}))])
    assert len(blobs(store)) == 4

    assert store.delete("ds", 1) == [1]
    assert store.info("ds").tags == {}  # the tag on the deleted version went with it
    with pytest.raises(NotFound):
        store.files("ds:1")
    assert store.delete("tmp") == [1]
    assert [d.name for d in store.list()] == ["ds", "keep"]

    young = store.gc()  # default grace: fresh blobs could belong to an upload in flight
    assert young.blobs_removed == 0 and young.blobs_too_young == 1
    g = store.gc(grace_seconds=0)
    assert (g.blobs_removed, g.bytes_removed, g.blobs_kept) == (1, len("temporary"), 3)
    store.download("ds", str(tmp_path / "out"))
    store.download("keep", str(tmp_path / "out2"))
    assert read_tree(tmp_path / "out") == read_tree(v2)
    with pytest.raises(NotFound):
        store.delete("ds", 7)
    with pytest.raises(NotFound):
        store.delete("tmp")


# --- bad input changes nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path, message",
    [
        ("../x", "'..' in file path"),
        ("a/../../x", "'..' in file path"),
        ("/etc/passwd", "absolute file path"),
        ("C:/x", "absolute file path"),
        ("a\nb", "control character"),
        ("a//b", "empty or '.' component"),
        ("./a", "empty or '.' component"),
        ("a\\..\\b", "backslash"),
    ],
)
def test_path_escape_refused(path: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        validate_path(path)


def test_escaping_upload_writes_nothing(store: DatasetStore, tmp_path: Path) -> None:
    f = write_tree(tmp_path, {"ok.txt": "ok"}) / "ok.txt"
    for bad in ("../x", "/abs/x", "a\x00b"):
        with pytest.raises(InputError) as e:
            store.upload("ds", {"good.txt": str(f), bad: str(f)})
        assert "file path" in str(e.value)
    for name in ("../evil", "a/b", "", ".hidden", "x" * 200, "a:b"):
        with pytest.raises(InputError, match="invalid dataset name"):
            store.upload(name, [str(f)])
    assert not store.fs.exists(store.root) or not store.fs.find(store.root)
    for ref in ("../x", "ds:../x", "ds:a/b"):
        with pytest.raises(InputError):
            parse_ref(ref)


def test_tampered_manifest_cannot_write_outside_dest(store: DatasetStore, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a": "a"})
    store.upload("ds", [str(src)])
    manifest_path = store._manifest("ds", 1)
    m = json.loads(store.fs.cat_file(manifest_path))
    m["files"]["../escaped"] = m["files"]["a"]
    store.fs.pipe_file(manifest_path, json.dumps(m).encode())
    dest = tmp_path / "inner" / "dest"
    with pytest.raises(InputError, match=r"'\.\.' in file path"):
        store.download("ds", str(dest))
    assert not (tmp_path / "inner").exists()

    # a symlinked folder inside dest pointing elsewhere is refused too
    store.upload("ds2", {"sub/a": str(src / "a")})
    outside = tmp_path / "outside"
    outside.mkdir()
    dest.mkdir(parents=True)
    (dest / "sub").symlink_to(outside)
    with pytest.raises(InputError, match="outside"):
        store.download("ds2", str(dest))
    assert list(outside.iterdir()) == []


# --- atomicity, concurrency -----------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc/self/mem")
def test_upload_failing_midway_leaves_no_version(make_store, tmp_path: Path) -> None:
    """A real read error in the middle of an upload (/proc/self/mem looks like an empty regular
    file and fails with EIO when read): the blobs sent so far stay invisible, gc reclaims them."""
    store = make_store(batch_files=2)
    src = write_tree(tmp_path / "src", {f"f{i}": os.urandom(1000) for i in range(6)})
    (src / "f3_unreadable").symlink_to("/proc/self/mem")
    with pytest.raises(InputError, match=r"cannot read .*f3_unreadable"):
        store.upload("ds", [str(src)])
    sent = blobs(store)
    assert 0 < len(sent) < 6  # it did fail midway
    with pytest.raises(NotFound):
        store.info("ds")
    assert store.list() == []
    assert store.gc(grace_seconds=0).blobs_removed == len(sent)

    (src / "f3_unreadable").unlink()
    v = store.upload("ds", [str(src)])
    assert v.version == 1 and v.files == 6


def test_concurrent_uploads_get_distinct_versions(make_store, tmp_path: Path) -> None:
    n = 4
    srcs = [write_tree(tmp_path / f"s{i}", tree_of(6, 5_000)) for i in range(n)]
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def up(i: int) -> None:
        store = make_store()  # each writer has its own store object, as separate processes would
        barrier.wait()
        results[i] = store.upload("shared", [str(srcs[i])])

    threads = [threading.Thread(target=up, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = sorted(r.version for r in results)
    assert versions == list(range(1, n + 1))
    store = make_store()
    for i, r in enumerate(results):
        out = tmp_path / f"out{i}"
        store.download(f"shared:{r.version}", str(out))
        assert read_tree(out) == read_tree(srcs[i])


# --- storage failures -------------------------------------------------------------------------


def test_storage_errors_are_clear(s3_endpoint: str, tmp_path: Path) -> None:
    f = write_tree(tmp_path, {"a": "a"}) / "a"
    store = DatasetStore("s3://no-such-bucket/ds", endpoint_url=s3_endpoint)
    with pytest.raises(StorageError, match="uploading dataset ds to s3://no-such-bucket/ds"):
        store.upload("ds", [str(f)])
    with pytest.raises(InputError, match="unsupported storage URL"):
        DatasetStore("ftp://host/x")
    with pytest.raises(InputError, match="unknown S3 storage option"):
        DatasetStore("s3://b/x", endpont_url="typo")
    with pytest.raises(InputError, match="names no bucket"):
        DatasetStore("s3:///x")
