"""Storage URLs → fsspec filesystems, and the few write primitives the data layer needs.

    open_store("s3://bucket/prefix", endpoint_url=...)  -> (S3FileSystem, "bucket/prefix")
    open_store("/some/dir") or "file:///some/dir"       -> (LocalFileSystem, "/some/dir")
    open_store("az://container/prefix")                 -> (AzureBlobFileSystem, "container/prefix")
    open_store("memory://name")                         -> (MemoryFileSystem, "/name")  (tests)

Credentials come from `options` (key/secret/token for S3, account_name/account_key/
connection_string/... for Azure) or from each SDK's own environment variables and profiles;
they are never part of the returned root path, and `redact()` masks them in messages.
Every storage failure surfaces as `StorageError` (an `OsmoError`); a missing optional package
names the extra to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from ..errors import InputError, OsmoError

__all__ = [
    "StorageError",
    "create_exclusive",
    "get_file",
    "open_store",
    "put_file_atomic",
    "redact",
    "run_many",
    "storage_errors",
]

_EXTRAS = {"s3": ("s3fs", "s3"), "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure")}
_S3_OPTIONS = {"endpoint_url", "key", "secret", "token", "anon", "profile", "client_kwargs"}
_memory_lock = threading.Lock()


class StorageError(OsmoError):
    """The storage backend failed (unreachable, missing bucket, refused credentials, ...)."""


def redact(text: str) -> str:
    """Mask credentials that may appear in a URL or an SDK message."""
    text = re.sub(r"(//[^/:@\s]+:)[^@/\s]+@", r"\1***@", text)
    return re.sub(
        r"(?i)((?:secret|key|token|password|signature|sig|accountkey)[\"']?\s*[=:]\s*[\"']?)"
        r"[^\s&;\"',]+",
        r"\1***",
        text,
    )


def _need(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise StorageError(
            f"{module} is not installed; it is needed for this storage URL: "
            f"pip install 'osmo-jupyter[{extra}]'"
        ) from None


def open_store(url: str, **options: Any) -> tuple[Any, str]:
    """The filesystem for `url` and the root path inside it (no trailing slash)."""
    if not url or any(ord(c) < 32 for c in url):
        raise InputError(f"invalid storage URL {url!r}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        import fsspec.implementations.local as local

        path = url if scheme == "" else (parts.netloc + parts.path if parts.netloc else parts.path)
        return local.LocalFileSystem(auto_mkdir=True), os.path.abspath(os.path.expanduser(path))
    if scheme == "memory":
        import fsspec.implementations.memory as memory

        root = "/" + (parts.netloc + parts.path).strip("/")
        return memory.MemoryFileSystem(), root.rstrip("/") or "/"
    if scheme in ("s3", "s3a"):
        s3fs = _need(*_EXTRAS["s3"])
        if not parts.netloc:
            raise InputError(f"storage URL {redact(url)!r} names no bucket")
        unknown = set(options) - _S3_OPTIONS
        if unknown:
            raise InputError(f"unknown S3 storage option(s): {', '.join(sorted(unknown))}")
        kwargs = dict(options)
        if not kwargs.get("endpoint_url") and os.environ.get("AWS_ENDPOINT_URL_S3"):
            kwargs["endpoint_url"] = os.environ["AWS_ENDPOINT_URL_S3"]
        if not kwargs.get("endpoint_url"):
            kwargs.pop("endpoint_url", None)
        # several writers share a store: never trust a cached listing
        fs = s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True, **kwargs)
        return fs, (parts.netloc + parts.path).rstrip("/")
    if scheme in ("az", "abfs", "abfss"):
        adlfs = _need(*_EXTRAS[scheme if scheme != "abfss" else "abfs"])
        account = parts.netloc.split("@", 1)
        container = account[0]
        kwargs = dict(options)
        if len(account) == 2 and "account_name" not in kwargs:  # abfs://container@account.dfs...
            kwargs["account_name"] = account[1].split(".", 1)[0]
        try:  # as for S3: several writers share a store, never trust a cached listing
            fs = adlfs.AzureBlobFileSystem(
                skip_instance_cache=True, use_listings_cache=False, **kwargs
            )
        except Exception as e:
            raise StorageError(f"cannot open {redact(url)}: {redact(str(e))}") from None
        return fs, (container + parts.path).rstrip("/")
    raise InputError(
        f"unsupported storage URL {redact(url)!r} (use a path, file://, s3://, az://, memory://)"
    )


def is_local(fs: Any) -> bool:
    return "file" in _protocols(fs)


def _protocols(fs: Any) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn backend exceptions into StorageError naming `what`; OsmoErrors pass through."""
    try:
        yield
    except OsmoError:
        raise
    except FileNotFoundError as e:
        raise StorageError(f"{what}: not found ({redact(str(e))})") from None
    except PermissionError as e:
        raise StorageError(f"{what}: permission denied ({redact(str(e))})") from None
    except Exception as e:  # botocore, aiohttp, azure errors have no common root
        raise StorageError(f"{what}: {type(e).__name__}: {redact(str(e))}") from None


def put_file_atomic(fs: Any, local_path: str, remote_path: str) -> None:
    """Upload so that `remote_path` never holds a partial file.

    Object stores commit a PUT (single or multipart) atomically; a local folder gets a
    temporary name in the same directory, renamed when complete."""
    if is_local(fs):
        os.makedirs(os.path.dirname(remote_path), exist_ok=True)
        tmp = f"{remote_path}.tmp-{uuid.uuid4().hex}"
        try:
            fs.put_file(local_path, tmp)
            os.replace(tmp, remote_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return
    fs.put_file(local_path, remote_path)


def get_file(fs: Any, remote_path: str, local_path: str) -> None:
    """Download one object to a local file (safe from several threads at once)."""
    if "memory" in _protocols(fs):  # its open() shares one file object between readers
        with open(local_path, "wb") as f:
            f.write(fs.cat_file(remote_path))
        return
    fs.get_file(remote_path, local_path)


def run_many(
    fs: Any,
    method: str,
    calls: Sequence[tuple[Any, ...]],
    limit: int,
    done: Callable[[int], None] | None = None,
) -> list[Any]:
    """`fs.<method>(*args)` for every args in `calls`, at most `limit` at once, results in
    order: as coroutines on the filesystem's own loop when it is async (s3fs, adlfs), else in
    threads. Every call finishes before the first error, if any, is raised. `done(i)` is
    called (from any thread) as call i succeeds: progress reports."""
    if not calls:
        return []
    if getattr(fs, "async_impl", False) and hasattr(fs, f"_{method}"):
        from fsspec.asyn import sync

        async def all_calls() -> list[Any]:
            sem = asyncio.Semaphore(limit)

            async def one(i: int, args: tuple[Any, ...]) -> Any:
                async with sem:
                    result = await getattr(fs, f"_{method}")(*args)
                if done is not None:
                    done(i)
                return result

            tasks = (one(i, a) for i, a in enumerate(calls))
            return await asyncio.gather(*tasks, return_exceptions=True)

        results: list[Any] = sync(fs.loop, all_calls)  # fsspec is untyped
    else:
        fn = (lambda *a: get_file(fs, *a)) if method == "get_file" else getattr(fs, method)

        def call(i: int, args: tuple[Any, ...]) -> Any:
            try:
                result = fn(*args)
            except Exception as e:
                return e
            if done is not None:
                done(i)
            return result

        with ThreadPoolExecutor(max(1, min(limit, len(calls)))) as pool:
            results = list(pool.map(call, range(len(calls)), calls))
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def write_atomic(fs: Any, path: str, data: bytes) -> None:
    """Write a small object whole (replacing any previous one) without a partial state."""
    if is_local(fs):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return
    fs.pipe_file(path, data)


def create_exclusive(fs: Any, path: str, data: bytes) -> bool:
    """Write `data` at `path` only if nothing is there; False when something already was.

    Local folders use link(2) (atomic, fails if the name exists); S3 a conditional PUT
    (If-None-Match: *); Azure an upload without overwrite; memory a process lock."""
    protocols = _protocols(fs)
    if "file" in protocols:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    if "memory" in protocols:
        with _memory_lock:
            if fs.exists(path):
                return False
            fs.pipe_file(path, data)
            return True
    try:
        if {"az", "abfs"} & set(protocols):
            fs.pipe_file(path, data, overwrite=False)
        else:
            fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except Exception as e:
        if type(e).__name__ in ("ResourceExistsError",) or "PreconditionFailed" in str(e):
            return False
        raise
    return True
