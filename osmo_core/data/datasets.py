"""Content-addressed datasets on any storage URL.

Layout under the base URL (every object is written whole, then never changed, except tags):

    blobs/ab/cdef...                      file contents, keyed by sha256 (ab = first two hex digits)
    datasets/<name>/versions/<N>.json     manifest: {"files": {path: {sha256, size, mode}}, ...}
    datasets/<name>/tags/<tag>.json       {"version": N}

A version becomes visible only when its manifest exists, and the manifest is written last,
after every blob it names, with a create-exclusive write: two uploads of one name racing for
version N get N and N+1. An upload sends only the blobs the store lacks; a download skips files
whose local sha256 already matches. `gc()` (an explicit admin action) removes blobs that no
manifest references and that are older than a grace period (so it spares in-flight uploads).

Names, tags and paths are checked in refs.py; what the operations answer is in results.py; which
local files an upload sends, in local_files.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, TypeVar

from ..errors import InputError, NotFound, Problem
from .local_files import collect, sha256_file
from .refs import NAME, NO_SETID, SHA256, parse_ref, validate_name, validate_path, validate_tag
from .results import (
    DatasetInfo,
    DatasetSummary,
    DiffResult,
    FileEntry,
    GcStats,
    TransferStats,
    VersionInfo,
)
from .storage import (
    StorageError,
    create_exclusive,
    is_local,
    open_store,
    put_file_atomic,
    run_many,
    storage_errors,
    write_atomic,
)

# From this many files an upload to an object store lists blobs/ once (one request per 1,000
# blobs) instead of asking about each blob (s3fs: a HEAD, and a LIST when it is missing).
LIST_FROM = 64
T = TypeVar("T")
R = TypeVar("R")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _mtime(info: Mapping[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "created"):
        v = info.get(key)
        if isinstance(v, datetime):
            return v.timestamp()
        if isinstance(v, (int, float)):
            return float(v)
    return None


# --- the store -------------------------------------------------------------------------------


class DatasetStore:
    """Datasets under one storage URL (`open_store` options: endpoint_url, key, secret, ...)."""

    def __init__(self, base_url: str, *, workers: int = 16, batch_files: int = 512, **options: Any):
        self.url = base_url
        self.fs, self.root = open_store(base_url, **options)
        self.workers = max(1, workers)
        self.batch_files = max(1, batch_files)

    # paths
    def _blob(self, sha: str) -> str:
        return f"{self.root}/blobs/{sha[:2]}/{sha[2:]}"

    def _ds(self, name: str) -> str:
        return f"{self.root}/datasets/{name}"

    def _manifest(self, name: str, version: int) -> str:
        return f"{self._ds(name)}/versions/{version}.json"

    def _map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        items = list(items)
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(min(self.workers, len(items))) as pool:
            return list(pool.map(fn, items))

    def _ls_names(self, path: str) -> list[str]:
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    def _versions(self, name: str) -> list[int]:
        names = self._ls_names(f"{self._ds(name)}/versions")
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def _tags(self, name: str) -> dict[str, int]:
        tags = [n[:-5] for n in self._ls_names(f"{self._ds(name)}/tags") if n.endswith(".json")]
        paths = [f"{self._ds(name)}/tags/{t}.json" for t in tags]
        out = {}
        for t, data in zip(tags, self._map(self._cat_or_none, paths), strict=True):
            if data is not None:
                out[t] = int(json.loads(data)["version"])
        return dict(sorted(out.items()))

    def _cat_or_none(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def _read_manifest(self, name: str, version: int) -> dict[str, Any]:
        data = self._cat_or_none(self._manifest(name, version))
        if data is None:
            raise NotFound(f"dataset {name} has no version {version}")
        return json.loads(data)

    def _resolve(self, ref: str) -> tuple[str, int, dict[str, Any]]:
        name, sel = parse_ref(ref)
        with storage_errors(f"reading dataset {name} from {self.url}"):
            if sel == "latest":
                versions = self._versions(name)
                if not versions:
                    raise NotFound(f"no dataset named {name}")
                version = versions[-1]
            elif isinstance(sel, int):
                version = sel
            else:
                data = self._cat_or_none(f"{self._ds(name)}/tags/{sel}.json")
                if data is None:
                    raise NotFound(f"dataset {name} has no tag {sel}")
                version = int(json.loads(data)["version"])
            return name, version, self._read_manifest(name, version)

    @staticmethod
    def _entries(manifest: Mapping[str, Any]) -> dict[str, FileEntry]:
        files = {
            p: FileEntry(e["sha256"], int(e["size"]), int(e["mode"]))
            for p, e in manifest["files"].items()
        }
        problems = []
        for p, e in files.items():
            try:
                validate_path(p)
            except InputError as err:
                problems.extend(err.problems)
            if not SHA256.fullmatch(e.sha256):
                problems.append(Problem(f"bad sha256 for {p!r} in manifest", field="sha256"))
        if problems:
            raise InputError(problems)
        return files

    # --- upload ------------------------------------------------------------------------------

    def upload(
        self,
        name: str,
        paths: Iterable[str] | Mapping[str, str],
        tag: str | None = None,
    ) -> VersionInfo:
        """Record `paths` as the next version of `name`; send only the blobs the store lacks.

        Directories give their contents (relative to the directory), files their base name;
        a mapping is {dataset path: local file}. Nothing is visible until the manifest lands."""
        validate_name(name)
        if tag is not None:
            validate_tag(tag)
        files = collect(paths)
        t0 = time.monotonic()
        stats = TransferStats(files=len(files))
        entries: dict[str, FileEntry] = {}
        present: set[str] = set()
        items = sorted(files.items())
        with storage_errors(f"uploading dataset {name} to {self.url}"):
            many = len(items) >= LIST_FROM and not is_local(self.fs)
            listed = self._list_blobs() if many else None
            for i in range(0, len(items), self.batch_files):
                batch = items[i : i + self.batch_files]
                self._upload_batch(batch, entries, present, stats, listed)
            version = self._commit(name, entries)
            if tag is not None:
                self._write_tag(name, tag, version)
        stats.seconds = time.monotonic() - t0
        return VersionInfo(
            name=name,
            version=version,
            files=len(entries),
            size=sum(e.size for e in entries.values()),
            created=_now(),
            tags=[tag] if tag else [],
            stats=stats,
        )

    def _upload_batch(
        self,
        batch: list[tuple[str, str]],
        entries: dict[str, FileEntry],
        present: set[str],
        stats: TransferStats,
        listed: set[str] | None = None,
    ) -> None:
        """Hash a batch, then send the blobs neither `present` (sent or seen this upload) nor
        `listed` (in the store when the upload began; None: ask the store per blob)."""

        def hash_one(item: tuple[str, str]) -> tuple[str, os.stat_result]:
            try:
                st = os.stat(item[1])
                return sha256_file(item[1]), st
            except OSError as e:
                raise InputError(
                    Problem(f"cannot read {item[1]}: {e.strerror or e}", field="path")
                ) from None

        hashed = self._map(hash_one, batch)
        first: dict[str, tuple[str, os.stat_result]] = {}  # sha → (local, stat) to send
        for (rel, local), (sha, st) in zip(batch, hashed, strict=True):
            entries[rel] = FileEntry(sha, st.st_size, stat.S_IMODE(st.st_mode) & NO_SETID)
            if sha in present or sha in first:
                stats.skipped_files += 1
                stats.skipped_bytes += st.st_size
            else:
                first[sha] = (local, st)
        if listed is not None:
            exists = [sha in listed for sha in first]
        else:  # one existence check per distinct blob, all in parallel
            exists = run_many(self.fs, "exists", [(self._blob(s),) for s in first], self.workers)
        for sha, there in zip(list(first), exists, strict=True):
            if there:
                present.add(sha)
                stats.skipped_files += 1
                stats.skipped_bytes += first.pop(sha)[1].st_size

        if is_local(self.fs):
            self._map(lambda sha: put_file_atomic(self.fs, first[sha][0], self._blob(sha)), first)
        else:  # an object store commits each PUT whole
            calls = [(local, self._blob(sha)) for sha, (local, _) in first.items()]
            run_many(self.fs, "put_file", calls, self.workers)
        for sha, (local, st) in first.items():
            after = os.stat(local)
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(self._blob(sha))
                raise InputError(Problem(f"{local} changed during the upload", field="path"))
        for sha, (_, st) in first.items():
            present.add(sha)
            stats.transferred_files += 1
            stats.transferred_bytes += st.st_size

    def _list_blobs(self) -> set[str]:
        """The sha256 of every blob in the store, from one paginated listing."""
        try:
            paths = self.fs.find(f"{self.root}/blobs", detail=False)
        except FileNotFoundError:
            return set()
        out = set()
        for p in paths:
            parts = p.rstrip("/").split("/")
            sha = parts[-2] + parts[-1] if len(parts) >= 2 else ""
            if SHA256.fullmatch(sha):
                out.add(sha)
        return out

    def _commit(self, name: str, entries: dict[str, FileEntry]) -> int:
        files = {p: asdict(e) for p, e in sorted(entries.items())}
        versions = self._versions(name)
        version = (versions[-1] if versions else 0) + 1
        for _ in range(1000):
            body = {"name": name, "version": version, "created": _now(), "files": files}
            data = json.dumps(body, indent=1, sort_keys=True).encode()
            if create_exclusive(self.fs, self._manifest(name, version), data):
                return version
            version += 1
        raise StorageError(f"could not allocate a version of dataset {name} (1000 attempts)")

    def _write_tag(self, name: str, tag: str, version: int) -> None:
        data = json.dumps({"version": version, "created": _now()}).encode()
        write_atomic(self.fs, f"{self._ds(name)}/tags/{tag}.json", data)

    # --- download ----------------------------------------------------------------------------

    def download(self, ref: str, dest: str, regex: str | None = None) -> TransferStats:
        """Write the files of `ref` ('name', 'name:N', 'name:tag') under `dest`, skipping those
        whose local sha256 already matches; with `regex`, only the paths it matches
        (re.search). Other files in `dest` are left alone."""
        t0 = time.monotonic()
        name, version, manifest = self._resolve(ref)
        entries = self._entries(manifest)
        if regex:
            pattern = re.compile(regex)
            entries = {p: e for p, e in entries.items() if pattern.search(p)}
        dest_real = os.path.realpath(dest)
        # refuse anything that would land outside dest (e.g. through a symlinked folder)
        for rel in entries:
            parent = os.path.realpath(os.path.dirname(os.path.join(dest_real, *rel.split("/"))))
            if parent != dest_real and not parent.startswith(dest_real + os.sep):
                raise InputError(Problem(f"{rel!r} would be written outside {dest}", field="path"))
        stats = TransferStats(files=len(entries))

        def up_to_date(item: tuple[str, FileEntry]) -> bool:
            rel, e = item
            target = os.path.join(dest_real, *rel.split("/"))
            with contextlib.suppress(OSError):
                st = os.lstat(target)
                if (
                    stat.S_ISREG(st.st_mode)
                    and st.st_size == e.size
                    and sha256_file(target) == e.sha256
                ):
                    if stat.S_IMODE(st.st_mode) != e.mode & NO_SETID:
                        os.chmod(target, e.mode & NO_SETID)
                    return True
            os.makedirs(os.path.dirname(target), exist_ok=True)
            return False

        def install(item: tuple[str, FileEntry, str]) -> None:
            rel, e, tmp = item
            got = sha256_file(tmp)
            if got != e.sha256:
                raise StorageError(f"blob {e.sha256} of {name}:{version} is corrupt (read {got})")
            os.chmod(tmp, e.mode & NO_SETID)  # a manifest cannot make a setuid program
            os.replace(tmp, os.path.join(dest_real, *rel.split("/")))

        items = sorted(entries.items())
        with storage_errors(f"downloading {name}:{version} from {self.url}"):
            fresh = self._map(up_to_date, items)
            todo = [
                (rel, e, os.path.join(dest_real, *rel.split("/")[:-1], f".osmo-{uuid.uuid4().hex}"))
                for (rel, e), ok in zip(items, fresh, strict=True)
                if not ok
            ]
            try:
                calls = [(self._blob(e.sha256), tmp) for _, e, tmp in todo]
                run_many(self.fs, "get_file", calls, self.workers)
                self._map(install, todo)
            finally:
                for _, _, tmp in todo:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
        for (_, e), ok in zip(items, fresh, strict=True):
            if ok:
                stats.skipped_files += 1
                stats.skipped_bytes += e.size
            else:
                stats.transferred_files += 1
                stats.transferred_bytes += e.size
        stats.seconds = time.monotonic() - t0
        return stats

    # --- read-only queries -------------------------------------------------------------------

    def list(self) -> list[DatasetSummary]:
        with storage_errors(f"listing datasets in {self.url}"):
            names = sorted(n for n in self._ls_names(f"{self.root}/datasets") if NAME.fullmatch(n))

            def summary(n: str) -> DatasetSummary:
                vs = self._versions(n)
                return DatasetSummary(n, len(vs), vs[-1] if vs else None, self._tags(n))

            return [s for s in self._map(summary, names) if s.versions]

    def info(self, name: str) -> DatasetInfo:
        validate_name(name)
        with storage_errors(f"reading dataset {name} from {self.url}"):
            versions = self._versions(name)
            if not versions:
                raise NotFound(f"no dataset named {name}")
            tags = self._tags(name)
            manifests = self._map(lambda v: self._cat_or_none(self._manifest(name, v)), versions)
        out = []
        for v, data in zip(versions, manifests, strict=True):
            if data is None:  # deleted meanwhile
                continue
            m = json.loads(data)
            out.append(
                VersionInfo(
                    name=name,
                    version=v,
                    files=len(m["files"]),
                    size=sum(int(e["size"]) for e in m["files"].values()),
                    created=m.get("created", ""),
                    tags=[t for t, tv in tags.items() if tv == v],
                )
            )
        return DatasetInfo(name, out, tags)

    def files(self, ref: str) -> dict[str, FileEntry]:
        return self._entries(self._resolve(ref)[2])

    def diff(self, ref_a: str, ref_b: str) -> DiffResult:
        a, b = self.files(ref_a), self.files(ref_b)
        return DiffResult(
            a=ref_a,
            b=ref_b,
            added=sorted(set(b) - set(a)),
            removed=sorted(set(a) - set(b)),
            changed=sorted(p for p in set(a) & set(b) if a[p] != b[p]),
        )

    # --- changes -----------------------------------------------------------------------------

    def tag(self, name: str, version: int, tag: str) -> None:
        validate_name(name)
        validate_tag(tag)
        with storage_errors(f"tagging dataset {name} in {self.url}"):
            if not self.fs.exists(self._manifest(name, version)):
                raise NotFound(f"dataset {name} has no version {version}")
            self._write_tag(name, tag, version)

    def delete(self, name: str, version: int | None = None) -> list[int]:
        """Remove one version (and the tags on it) or the whole dataset; blobs stay until gc()."""
        validate_name(name)
        with storage_errors(f"deleting dataset {name} in {self.url}"):
            versions = self._versions(name)
            if version is not None:
                if version not in versions:
                    raise NotFound(f"dataset {name} has no version {version}")
                versions = [version]
            elif not versions:
                raise NotFound(f"no dataset named {name}")
            doomed = set(versions)
            for t, v in self._tags(name).items():
                if v in doomed:
                    self.fs.rm_file(f"{self._ds(name)}/tags/{t}.json")
            for v in versions:
                self.fs.rm_file(self._manifest(name, v))
        return versions

    def gc(self, grace_seconds: float = 3600.0) -> GcStats:
        """Remove blobs no manifest references, if older than `grace_seconds` (an upload in
        flight has blobs whose manifest is not written yet). Run it as an admin action."""
        stats = GcStats()
        with storage_errors(f"collecting garbage in {self.url}"):
            referenced: set[str] = set()
            for n in self._ls_names(f"{self.root}/datasets"):
                paths = [self._manifest(n, v) for v in self._versions(n)]
                for data in self._map(self._cat_or_none, paths):
                    if data is not None:
                        referenced.update(e["sha256"] for e in json.loads(data)["files"].values())
            try:
                blobs = self.fs.find(f"{self.root}/blobs", detail=True)
            except FileNotFoundError:
                blobs = {}
            now = time.time()
            doomed = []
            for path, info in blobs.items():
                parts = path.rstrip("/").split("/")
                sha = parts[-2] + parts[-1] if len(parts) >= 2 else ""
                if sha in referenced:
                    stats.blobs_kept += 1
                    continue
                mtime = _mtime(info)
                if mtime is not None and now - mtime < grace_seconds:
                    stats.blobs_too_young += 1
                    continue
                doomed.append((path, int(info.get("size") or 0)))
            self._map(lambda p: self.fs.rm_file(p[0]), doomed)
            stats.blobs_removed = len(doomed)
            stats.bytes_removed = sum(s for _, s in doomed)
            if is_local(self.fs):
                for d in self._ls_names(f"{self.root}/blobs"):
                    with contextlib.suppress(OSError):
                        os.rmdir(f"{self.root}/blobs/{d}")  # only when empty
        return stats
