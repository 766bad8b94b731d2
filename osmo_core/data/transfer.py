"""A task's data in and out: storage URLs and datasets to and from local folders.

Blocking functions, run by the agent in worker threads (never on the engine's loop). Each
returns the TransferStats of what it moved, or raises TransferError carrying the exit code the
task ends with (exit_codes.py) and a message naming the redacted URL and the storage error.

    download_url(url, dest, regex, options)          every object under url (or the one object)
    upload_dir(src, url, regex, options)             every file under src, to url/<relative path>
    download_dataset(store, "name[:tag|:N]", dest, regex, options)
    upload_dataset(store, "name[:tag]", src, regex, options)   -> a new version (tagged)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ..errors import InputError, OsmoError
from ..exit_codes import ExitCode
from .refs import validate_path
from .results import TransferStats
from .storage import open_store, redact, run_many

log = logging.getLogger("osmo_core.data")


class TransferError(OsmoError):
    """A transfer failed; `code` (exit_codes.py: 2010-2014) is the exit code the task ends with,
    the message names the (redacted) URL and the storage error."""

    def __init__(self, code: ExitCode, message: str):
        super().__init__(message)
        self.code = code


Opener = Callable[[str], int]  # path -> an fd open for reading
OPEN_BATCH = 256  # files held open at once by an upload through an opener
_SETID = stat.S_ISUID | stat.S_ISGID

WORKERS = 16  # concurrent object transfers per task
T = TypeVar("T")
#: progress(files_done, bytes_done, files_total, bytes_total), from any thread
Progress = Callable[[int, int, int, int], None]

_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AuthorizationFailure",
    "AuthenticationFailed",
    "AuthorizationPermissionMismatch",
    "NoCredentialsError",
    "ClientAuthenticationError",
}


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _code_of(e: BaseException, default: ExitCode) -> ExitCode:
    """2014 when the storage refused the credentials (or found none); else `default` (OSMO
    has no code of its own for a missing dataset: a download failed)."""
    for x in _chain(e):
        if isinstance(x, PermissionError) or getattr(x, "status_code", None) in (401, 403):
            return ExitCode.DATA_UNAUTHORIZED
        code = getattr(x, "error_code", "") or ""
        names = {type(x).__name__, str(getattr(code, "value", code))}
        err = getattr(x, "response", None)
        if isinstance(err, dict):
            names.add(str(err.get("Error", {}).get("Code", "")))
        if names & _AUTH_CODES:
            return ExitCode.DATA_UNAUTHORIZED
    return default


def _describe(e: BaseException) -> str:
    """One line: the error's type, its service error code if any, its first line."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    found = next((c for x in _chain(e) if (c := getattr(x, "error_code", None))), "")
    code = str(getattr(found, "value", found))  # azure's codes are enums
    kind = f"{type(e).__name__} ({code})" if code and code not in text else type(e).__name__
    return redact(f"{kind}: {text}" if text else kind)


def run(what: str, url: str, default: ExitCode, fn: Callable[[], T]) -> T:
    """`fn()`, with any failure turned into TransferError("<what> <url>: <error>")."""
    try:
        return fn()
    except TransferError:
        raise
    except Exception as e:
        code = _code_of(e, default)
        raise TransferError(code, f"{what} {redact(url)} failed: {_describe(e)}") from e


def _matcher(regex: str | None) -> Callable[[str], bool]:
    if not regex:
        return lambda rel: True
    pattern = re.compile(regex)  # validated at submit
    return lambda rel: pattern.search(rel) is not None


def _local_files(src: Path, regex: str | None) -> dict[str, str]:
    """relative POSIX path -> local file, for the regular files under `src` that match.

    A symlink counts only when it leads to a file inside `src`: the agent uploads as itself
    (root, on a team server), and a task could otherwise link its output to the control
    plane's store or a file of another user and have it uploaded for it."""
    keep = _matcher(regex)
    top = os.path.realpath(src)
    out: dict[str, str] = {}
    for dirpath, dirs, names in os.walk(src):
        dirs.sort()
        for name in sorted(names):
            local = os.path.join(dirpath, name)
            rel = os.path.relpath(local, src).replace(os.sep, "/")
            with contextlib.suppress(OSError):
                if not (stat.S_ISREG(os.stat(local).st_mode) and keep(rel)):
                    continue
                if os.path.islink(local) or os.path.realpath(dirpath) != dirpath:
                    real = os.path.realpath(local)
                    if not real.startswith(top + os.sep):
                        log.warning("not uploading %s: it leads outside %s", local, src)
                        continue
                out[rel] = local
    return out


class _Counter:
    """Turns run_many's per-call `done(i)` into progress(files, bytes, of files, of bytes)."""

    def __init__(self, sizes: list[int], progress: Progress | None):
        self.sizes, self.progress = sizes, progress
        self.files = self.bytes = 0
        self._lock = threading.Lock()

    def __call__(self, i: int) -> None:
        if self.progress is None:
            return
        with self._lock:
            self.files += 1
            self.bytes += self.sizes[i]
            files, size = self.files, self.bytes
        self.progress(files, size, len(self.sizes), sum(self.sizes))


def _copy(
    fs: Any,
    method: str,
    calls: list[tuple[Any, str]],
    sizes: list[int],
    progress: Progress | None,
    t0: float,
) -> TransferStats:
    """Every (source, target) pair through `fs.<method>`, in parallel; what moved."""
    run_many(fs, method, calls, WORKERS, _Counter(sizes, progress))
    return TransferStats(
        files=len(calls),
        transferred_files=len(calls),
        transferred_bytes=sum(sizes),
        seconds=time.monotonic() - t0,
    )


def download_url(
    url: str,
    dest: Path,
    regex: str | None,
    options: dict[str, Any],
    progress: Progress | None = None,
) -> TransferStats:
    def go() -> TransferStats:
        t0 = time.monotonic()
        fs, root = open_store(url, **options)
        found = fs.find(root, detail=True)
        if not found:
            raise FileNotFoundError(f"no objects at {redact(url)}")
        keep = _matcher(regex)
        calls, sizes = [], []
        base = root.rstrip("/")
        for path, info in sorted(found.items()):
            if info.get("type") == "directory" or path.endswith("/"):  # folder markers
                continue
            # the URL names one object, or a prefix: keep paths relative to it
            rel = os.path.basename(path) if path == base else path[len(base) :].lstrip("/")
            if not keep(rel):
                continue
            validate_path(rel)  # an object named "../x" must not escape dest
            local = dest.joinpath(*rel.split("/"))
            local.parent.mkdir(parents=True, exist_ok=True)
            calls.append((path, str(local)))
            sizes.append(int(info.get("size") or 0))
        stats = _copy(fs, "get_file", calls, sizes, progress, t0)
        for _, copied in calls:  # a stored file's setuid/setgid bit does not come along
            with contextlib.suppress(OSError):
                mode = os.lstat(copied).st_mode
                if stat.S_ISREG(mode) and mode & _SETID:
                    os.chmod(copied, stat.S_IMODE(mode) & ~_SETID)
        return stats

    return run("download of", url, ExitCode.DOWNLOAD_FAILED, go)


def upload_dir(
    src: Path,
    url: str,
    regex: str | None,
    options: dict[str, Any],
    progress: Progress | None = None,
    opener: Opener | None = None,
) -> TransferStats:
    """`opener`: opens each file to upload (as the task that made them: agent/identity.py)."""

    def go() -> TransferStats:
        t0 = time.monotonic()
        files = _local_files(src, regex)
        fs, root = open_store(url, **options)
        if opener is None:
            calls = [(local, f"{root}/{rel}") for rel, local in files.items()]
            sizes = [os.path.getsize(local) for local in files.values()]
            return _copy(fs, "put_file", calls, sizes, progress, t0)
        items, moved = list(files.items()), TransferStats(files=len(files))
        for at in range(0, len(items), OPEN_BATCH):  # a bounded number of open files
            with _opened(dict(items[at : at + OPEN_BATCH]), opener) as batch:
                calls = [(fd, f"{root}/{rel}") for rel, fd in batch.items()]
                sizes = [os.path.getsize(fd) for fd in batch.values()]
                done = _copy(fs, "put_file", calls, sizes, progress, t0)
            moved.transferred_files += done.transferred_files
            moved.transferred_bytes += done.transferred_bytes
        moved.seconds = time.monotonic() - t0
        return moved

    return run("upload to", url, ExitCode.UPLOAD_FAILED, go)


@contextlib.contextmanager
def _opened(files: dict[str, str], opener: Opener) -> Iterator[dict[str, str]]:
    """rel -> /proc/self/fd/N of each regular file, opened by `opener` now: what is read is
    the file opened, whatever its path leads to by then. Other kinds are left out."""
    fds: list[int] = []
    out: dict[str, str] = {}
    try:
        for rel, local in files.items():
            fd = opener(local)
            fds.append(fd)
            if stat.S_ISREG(os.fstat(fd).st_mode):
                out[rel] = f"/proc/self/fd/{fd}"
        yield out
    finally:
        for fd in fds:
            os.close(fd)


def download_dataset(
    store: str, ref: str, dest: Path, regex: str | None, options: dict[str, Any]
) -> TransferStats:
    from .datasets import DatasetStore  # only for datasets: the in-pod agent starts without it

    what = f"dataset {ref} from"
    return run(
        f"download of {what}",
        store,
        ExitCode.DOWNLOAD_FAILED,
        lambda: DatasetStore(store, workers=WORKERS, **options).download(ref, str(dest), regex),
    )


def upload_dataset(
    store: str,
    ref: str,
    src: Path,
    regex: str | None,
    options: dict[str, Any],
    opener: Opener | None = None,
) -> TransferStats:
    from .datasets import DatasetStore  # only for datasets: the in-pod agent starts without it

    name, _, tag = ref.partition(":")

    def go() -> TransferStats:
        files = _local_files(src, regex)
        if not files:
            raise InputError(f"no files in the output to record as dataset {name}")
        with contextlib.ExitStack() as stack:
            if opener is not None:  # one version: every file open at once (RLIMIT_NOFILE)
                files = stack.enter_context(_opened(files, opener))
            ds = DatasetStore(store, workers=WORKERS, **options)
            v = ds.upload(name, files, tag=tag or None)
        assert v.stats is not None
        return v.stats

    return run(f"upload of dataset {ref} to", store, ExitCode.UPLOAD_FAILED, go)
