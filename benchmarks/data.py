"""Data-layer benchmark against moto's S3 server on loopback, side by side with plain s3fs.

    python benchmarks/data.py            # OSMO_BENCH_DATA_MB=32: about 2 min on 2 shared cores
    OSMO_BENCH_DATA_MB=1024 python benchmarks/data.py   # the issue's 1 GB

For the same data (OSMO_BENCH_DATA_MB in 1,000 files, then in 1 file) it times, in one run:
  s3fs put / get                 the floor: fs.put / fs.get of the folder, recursive
  task upload / download         data/transfer.py (what the agent does for url outputs/inputs)
  dataset upload / download      DatasetStore, first upload into an empty store
  dataset re-upload unchanged    must send 0 blob bytes, in < 10% of the first upload's time
  dataset re-upload 10% changed  must send about 10% of the bytes
Targets (issue 5): task and dataset transfers >= 0.9x s3fs's throughput. moto keeps objects
in memory, so the data size is bounded by RAM; files go to $TMPDIR.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from osmo_core.data import transfer
from osmo_core.data.datasets import DatasetStore

MB = 2**20
TOTAL_MB = float(os.environ.get("OSMO_BENCH_DATA_MB", "32"))
BUCKET = "bench"


def make_files(folder: Path, count: int, total: int) -> None:
    size = total // count
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"d{i % 10}" / f"f{i:05d}.bin").parent.mkdir(exist_ok=True)
        (folder / f"d{i % 10}" / f"f{i:05d}.bin").write_bytes(os.urandom(size))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def bench_case(count: int, endpoint: str, work: Path) -> None:
    import s3fs

    total = int(TOTAL_MB * MB)
    options = {"endpoint_url": endpoint}
    case = f"{count} file" + ("s" if count > 1 else "")
    src = work / f"src{count}"
    make_files(src, count, total)
    run = uuid.uuid4().hex[:8]

    def row(op: str, secs: float, floor: float | None = None, note: str = "") -> None:
        rate = total / MB / secs if secs > 0 else float("inf")
        ratio = f"{floor / secs:.2f}x" if floor else ""
        print(f"{case:<10} {op:<30} {secs:8.2f} {rate:8.1f} {ratio:>8}  {note}", flush=True)

    # The floor: plain s3fs, recursive put/get of the same folder, each from a new
    # S3FileSystem as a script (or our agent, per transfer) would open one.
    def fresh() -> Any:
        return s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)

    plain = f"{BUCKET}/{run}/plain/"
    put_s, _ = timed(lambda: fresh().put(f"{src}/", plain, recursive=True))
    row("s3fs put", put_s)
    get_s, _ = timed(lambda: fresh().get(plain, f"{work}/get{run}/", recursive=True))
    row("s3fs get", get_s)

    url = f"s3://{BUCKET}/{run}/task"
    up_s, _ = timed(lambda: transfer.upload_dir(src, url, None, options))
    row("task upload (url output)", up_s, put_s)
    dest = work / f"task{run}"
    down_s, _ = timed(lambda: transfer.download_url(url, dest, None, options))
    row("task download (url input)", down_s, get_s)

    store = DatasetStore(f"s3://{BUCKET}/{run}/datasets", **options)
    first_s, _ = timed(lambda: store.upload("bench", [str(src)]))
    row("dataset upload (new)", first_s, put_s)
    dl_s, _ = timed(lambda: store.download("bench", str(work / f"ds{run}")))
    row("dataset download", dl_s, get_s)
    again_s, v2 = timed(lambda: store.upload("bench", [str(src)]))
    share = again_s / first_s * 100
    sent = v2.stats.transferred_bytes
    row(
        "dataset re-upload unchanged",
        again_s,
        note=f"{sent} blob bytes sent; {share:.1f}% of first",
    )
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for p in files[: max(1, len(files) // 10)]:  # one file: that one, so all of it is sent
        p.write_bytes(os.urandom(p.stat().st_size))
    part_s, v3 = timed(lambda: store.upload("bench", [str(src)]))
    share = v3.stats.transferred_bytes / max(1, v3.stats.total_bytes) * 100
    row("dataset re-upload 10% changed", part_s, note=f"{share:.0f}% of the bytes sent")
    shutil.rmtree(src)
    print()


def main() -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True).mkdir(BUCKET)
    print(f"moto on {endpoint}; {TOTAL_MB:g} MB per case (OSMO_BENCH_DATA_MB)\n")
    print(f"{'case':<10} {'operation':<30} {'seconds':>8} {'MB/s':>8} {'vs s3fs':>8}  notes")
    work = Path(tempfile.mkdtemp(prefix="osmo-bench-data-"))
    try:
        for count in (1000, 1):
            bench_case(count, endpoint, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stop()


if __name__ == "__main__":
    main()
