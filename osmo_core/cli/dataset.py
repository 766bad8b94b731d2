"""`osmo dataset ...`: content-addressed datasets on a local folder or any storage URL.

Exit codes follow `osmo`: 0 done, 1 the storage failed, 2 invalid input (name, path, ref,
arguments), 4 no such dataset / version / tag. The default store is `<data dir>/datasets`;
`--store URL` (or $OSMO_DATASET_STORE) points at any storage URL, e.g. s3://bucket/datasets,
with `--endpoint-url` for S3-compatible servers.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..errors import InputError, OsmoError, Problem
from .common import EXIT_OK, Output, name_subcommands, report


def register(top: Any) -> None:
    """Add `dataset` and its subcommands to the top-level `add_subparsers()` object."""
    ds = top.add_parser("dataset", help="content-addressed datasets (versions, tags)")
    # No Service: the dataset commands need the config (its store and credentials) only.
    ds.set_defaults(run=run_dataset)
    cmds = ds.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--store",
            help="storage URL of the dataset store (default: $OSMO_DATASET_STORE or "
            "<data dir>/datasets)",
        )
        sp.add_argument("--endpoint-url", help="S3-compatible endpoint for s3:// stores")
        sp.add_argument("--format", choices=["text", "json"], default="text")
        return sp

    up = common(cmds.add_parser("upload", help="record files as a new version; send new blobs"))
    up.add_argument("name", help="dataset name")
    up.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (folder contents)")
    up.add_argument("--tag", help="tag the new version")

    dl = common(cmds.add_parser("download", help="fetch a version; skip files already there"))
    dl.add_argument("ref", metavar="NAME[:TAG|:VERSION]")
    dl.add_argument("dest", help="destination folder")

    common(cmds.add_parser("list", help="datasets, their latest version and tags"))

    info = common(cmds.add_parser("info", help="versions, sizes, file counts, tags"))
    info.add_argument("name")

    tg = common(cmds.add_parser("tag", help="tag a version"))
    tg.add_argument("ref", metavar="NAME:VERSION")
    tg.add_argument("tag")

    df = common(cmds.add_parser("diff", help="files added, removed, changed between versions"))
    df.add_argument("ref_a", metavar="NAME:A")
    df.add_argument("ref_b", metavar="NAME:B")

    de = common(cmds.add_parser("delete", help="delete a version or a whole dataset"))
    de.add_argument("ref", metavar="NAME[:VERSION]")

    gc = common(cmds.add_parser("gc", help="remove blobs no version references (admin)"))
    gc.add_argument(
        "--grace",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="keep unreferenced blobs younger than this (uploads in flight); default 3600",
    )
    name_subcommands(cmds)


def _store(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The store's URL and its open_store options: --endpoint-url, else the configured
    credential whose `url` prefixes the store's (OsmoConfig.credentials)."""
    from ..config import load_config
    from ..data.credentials import match, storage_options

    config = load_config(getattr(args, "config", None))
    url = str(args.store or config.dataset_store)
    name = match(config.credentials, url)
    options = storage_options(config.credentials[name], url) if name else {}
    if args.endpoint_url:
        options["endpoint_url"] = args.endpoint_url
    return url, options


def _version_ref(ref: str, *, optional: bool) -> tuple[str, int | None]:
    name, sep, v = ref.partition(":")
    if not sep and optional:
        return name, None
    if not v.isdigit():
        raise InputError(Problem(f"expected NAME:VERSION (a number), got {ref!r}", field="ref"))
    return name, int(v)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        # a count of bytes (int) goes on as a float of KB, MB, GB
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _stats_text(verb: str, s: Any) -> str:
    rate = s.transferred_bytes / s.seconds / 1e6 if s.seconds > 0 else 0.0
    return (
        f"{s.files} files: {verb} {s.transferred_files} ({_size(s.transferred_bytes)}), "
        f"skipped {s.skipped_files} ({_size(s.skipped_bytes)}) in {s.seconds:.2f}s"
        f" ({rate:.1f} MB/s)"
    )


async def run_dataset(args: argparse.Namespace, out: Output) -> int:
    """Run one `osmo dataset` command; returns the exit code."""
    try:
        return await asyncio.to_thread(_run, args, out)
    except OsmoError as e:
        return report(e, out)


def _run(args: argparse.Namespace, out: Output) -> int:
    from ..data.datasets import DatasetStore

    url, options = _store(args)
    store = DatasetStore(url, **options)
    cmd = args.cmd
    if cmd == "upload":
        v = store.upload(args.name, args.paths, tag=args.tag)
        tag = f" (tag {args.tag})" if args.tag else ""
        out.result(
            v.to_dict(),
            f"{v.name}:{v.version}{tag}: " + _stats_text("sent", v.stats),
        )
    elif cmd == "download":
        s = store.download(args.ref, args.dest)
        out.result(
            {"ref": args.ref, "dest": args.dest, **s.to_dict()},
            f"{args.ref} → {args.dest}: " + _stats_text("received", s),
        )
    elif cmd == "list":
        rows = store.list()
        lines = [
            f"{r.name:<24} latest {r.latest:<5} versions {r.versions:<4} "
            + " ".join(f"{t}→{v}" for t, v in r.tags.items())
            for r in rows
        ]
        out.result([r.to_dict() for r in rows], "\n".join(lines) or "no datasets")
    elif cmd == "info":
        i = store.info(args.name)
        lines = [f"{i.name}: {len(i.versions)} versions, latest {i.latest}"]
        lines += [
            f"  {v.version:>4}  {v.files:>7} files  {_size(v.size):>10}  {v.created}"
            + (f"  [{', '.join(v.tags)}]" if v.tags else "")
            for v in i.versions
        ]
        out.result(i.to_dict(), "\n".join(lines))
    elif cmd == "tag":
        name, version = _version_ref(args.ref, optional=False)
        assert version is not None
        store.tag(name, version, args.tag)
        out.result(
            {"name": name, "version": version, "tag": args.tag},
            f"{name}:{version} tagged {args.tag}",
        )
    elif cmd == "diff":
        d = store.diff(args.ref_a, args.ref_b)
        lines = [f"+ {p}" for p in d.added] + [f"- {p}" for p in d.removed]
        lines += [f"~ {p}" for p in d.changed]
        out.result(d.to_dict(), "\n".join(lines) or "no differences")
    elif cmd == "delete":
        name, version = _version_ref(args.ref, optional=True)
        gone = store.delete(name, version)
        out.result(
            {"name": name, "deleted_versions": gone},
            f"deleted {name} version{'s' if len(gone) != 1 else ''} " + ", ".join(map(str, gone)),
        )
    elif cmd == "gc":
        g = store.gc(grace_seconds=args.grace)
        out.result(
            g.to_dict(),
            f"removed {g.blobs_removed} blobs ({_size(g.bytes_removed)}); "
            f"kept {g.blobs_kept} referenced, {g.blobs_too_young} younger than grace",
        )
    return EXIT_OK
