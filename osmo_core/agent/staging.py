"""An attempt's data transfers on the agent's host: `url`/`dataset` inputs into {{input:N}}
before its command starts; checkpoints every `frequency` seconds while it runs and once at its
end; {{output}} to each `outputs` target after it succeeded.

Transfers block (fsspec), so they run in a small thread pool of the agent's, never on its loop.
Each one becomes two system lines in the attempt's log (start, result) and one `transfer` event
{direction, url (redacted), dataset?, files, bytes, seconds, error?}; a long url transfer also
sends progress events (`final: false`, with files_total/bytes_total) at most once a second. A
failure raises TransferError, whose code the attempt ends with (exit_codes.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..data import transfer
from ..data.credentials import storage_options
from ..data.results import TransferStats
from ..data.storage import redact
from ..data.transfer import TransferError
from ..exit_codes import ExitCode
from ..wire import LaunchRequest
from .identity import TaskIdentity, opener
from .workdir import INPUTS, OUTPUT

_POOL = ThreadPoolExecutor(8, thread_name_prefix="osmo-transfer")
# Seconds between two progress events of one transfer (the variable is for tests).
PROGRESS_EVERY = float(os.environ.get("OSMO_TRANSFER_PROGRESS_SECONDS", "1"))

Log = Callable[[str], None]
Emit = Callable[[dict[str, Any]], None]


def needs_staging(req: LaunchRequest) -> bool:
    return bool(req.outputs or req.checkpoints) or any(i.url or i.dataset for i in req.inputs)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        # a count of bytes (int) goes on as a float of KB, MB, GB
        n /= 1000  # type: ignore[assignment]
    return str(n)


class Stager:
    def __init__(
        self,
        key: str,
        d: Path,
        req: LaunchRequest,
        creds: dict[str, dict[str, Any]],
        log: Log,
        emit: Emit,
        checkpoint_dirs: list[Path],
        identity: TaskIdentity | None = None,
    ):
        """`identity`: whom the task runs as (isolation); its files are read as it."""
        self.key, self.dir, self.req, self.creds = key, d, req, creds
        self._open = opener(identity) if identity is not None else None
        self._log, self._emit = log, emit
        self._checkpoint_dirs = checkpoint_dirs

    def _options(self, credential: str | None, url: str) -> dict[str, Any]:
        if credential is None:
            return {}  # the SDK's own environment variables and profiles
        cred = self.creds.get(credential)
        if cred is None:
            raise TransferError(
                ExitCode.DATA_AUTH_CHECK_FAILED,
                f"credential {credential!r} (for {redact(url)}) is not configured on this host",
            )
        return storage_options(cred, url)

    async def _one(
        self,
        direction: str,
        url: str,
        dataset: str | None,
        credential: str | None,
        fn: Callable[..., TransferStats],  # (options, progress): lambdas bind the rest as defaults
    ) -> None:
        what = f"dataset {dataset} ({redact(url)})" if dataset else redact(url)
        verb = {"download": "downloading", "upload": "uploading", "checkpoint": "checkpoint to"}
        self._log(f"{verb[direction]} {what}")
        t0 = time.monotonic()
        ev: dict[str, Any] = {"ev": "transfer", "key": self.key, "direction": direction}
        ev.update(url=redact(url), dataset=dataset)
        loop = asyncio.get_running_loop()
        last = [time.monotonic()]

        def progress(files: int, size: int, files_total: int, bytes_total: int) -> None:
            now = time.monotonic()  # called from transfer threads: throttle, then hand over
            if now - last[0] < PROGRESS_EVERY or files == files_total:
                return
            last[0] = now
            tick = {**ev, "final": False, "files": files, "bytes": size, "ts": time.time()}
            tick.update(files_total=files_total, bytes_total=bytes_total, seconds=now - t0)
            loop.call_soon_threadsafe(self._emit, tick)

        try:
            options = self._options(credential, url)
            stats = await loop.run_in_executor(_POOL, lambda: fn(options, progress))
        except TransferError as e:  # the caller logs it, once, with what it does about it
            self._emit({**ev, "error": str(e), "seconds": time.monotonic() - t0, "ts": time.time()})
            raise
        n, size = stats.transferred_files, stats.transferred_bytes
        skipped = f", {stats.skipped_files} unchanged" if stats.skipped_files else ""
        self._log(f"{direction} done: {n} files, {_size(size)}{skipped} in {stats.seconds:.2f}s")
        self._emit({**ev, "files": n, "bytes": size, "seconds": stats.seconds, "ts": time.time()})

    async def inputs(self) -> None:
        for i in self.req.inputs:
            dest = self.dir / INPUTS / str(i.index)
            if i.url:
                url, regex = i.url, i.regex
                await self._one(
                    "download",
                    url,
                    None,
                    i.credential,
                    lambda o, p, url=url, regex=regex, dest=dest: transfer.download_url(
                        url, dest, regex, o, p
                    ),
                )
            elif i.dataset and i.store:
                ref, store, regex = i.dataset, i.store, i.regex
                await self._one(
                    "download",
                    store,
                    ref,
                    i.credential,
                    lambda o, _, ref=ref, store=store, regex=regex, dest=dest: (
                        transfer.download_dataset(store, ref, dest, regex, o)
                    ),
                )

    async def outputs(self) -> None:
        for o in self.req.outputs:
            src = self.dir / OUTPUT
            if o.path:
                src = src / o.path
            if o.url:
                await self._upload_dir("upload", src, o.url, o.regex, o.credential)
            elif o.dataset and o.store:
                ref, store, regex = o.dataset, o.store, o.regex
                await self._one(
                    "upload",
                    store,
                    ref,
                    o.credential,
                    lambda opt, _, ref=ref, store=store, regex=regex, src=src: (
                        transfer.upload_dataset(store, ref, src, regex, opt, self._open)
                    ),
                )

    async def checkpoint(self, only: int | None = None) -> None:
        """Upload every checkpoint folder (or checkpoint `only`) once; the first failure
        raises (code 2012)."""
        for n, (c, local) in enumerate(
            zip(self.req.checkpoints, self._checkpoint_dirs, strict=True)
        ):
            if only is not None and n != only:
                continue
            # a failed checkpoint is a failed upload (2012) in OSMO, as upload_dir says
            await self._upload_dir("checkpoint", local, c.url, c.regex, c.credential)

    async def _upload_dir(
        self, direction: str, src: Path, url: str, regex: str | None, credential: str | None
    ) -> None:
        """Upload folder `src` to `url` (an output, or a checkpoint) as one transfer."""
        await self._one(
            direction,
            url,
            None,
            credential,
            lambda o, p: transfer.upload_dir(src, url, regex, o, p, self._open),
        )

    async def checkpoint_loop(self) -> None:
        """Periodic checkpoints while the command runs, each at its own frequency; a failed one
        is logged and tried again next period (the final one, at the end, decides)."""

        async def every(n: int, period: float) -> None:
            while True:
                await asyncio.sleep(max(1.0, period))
                try:
                    await self.checkpoint(n)
                except TransferError as e:
                    self._log(f"{e} (trying again in {period:g}s)")

        await asyncio.gather(*(every(n, c.frequency) for n, c in enumerate(self.req.checkpoints)))


def task_credentials(
    req: LaunchRequest, creds: dict[str, dict[str, Any]]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """OSMO's task `credentials:` resolved on the agent: ({ENV_VAR: secret}, {folder: {key:
    secret}}); TransferError (2013) for a credential or key this host does not know."""
    env: dict[str, str] = {}
    files: dict[str, dict[str, str]] = {}
    for name, use in req.credentials.items():
        cred = creds.get(name)
        if cred is None:
            raise TransferError(
                ExitCode.DATA_AUTH_CHECK_FAILED,
                f"credential {name!r} is not configured on this host",
            )
        if isinstance(use, str):
            files[use] = {k: v for k, v in cred.items() if k != "url" and isinstance(v, str)}
            continue
        for var, key in use.items():
            if not isinstance(cred.get(key), str):
                raise TransferError(
                    ExitCode.DATA_AUTH_CHECK_FAILED,
                    f"credential {name!r} has no key {key!r} (for ${var})",
                )
            env[var] = cred[key]
    return env, files
