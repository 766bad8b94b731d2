"""Containers benchmark: tasks with an `image` on podman (runc) against podman run by hand.

    python benchmarks/containers.py             # both, about 5 minutes on 2 cores
    python benchmarks/containers.py start       # one of: start chain

start  per task, launch -> exit record through the local backend's agent (image present, the
       task `true`), against `podman run --rm IMAGE true` run by hand in this script, and the
       same with `--network host` (the agent's containers share the host's network); all
       sequential, N_START each, medians                                     target <= 1.3x
chain  a 200-task chain (each task reads its upstream's output) through the engine, every task
       in a container, against the same chain with `containers: off` (on the host)

Needs podman and the test image (tests/conftest.py builds it: run any container test once, or
this script builds it the same way).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from osmo_core.backends.local import LocalBackend  # noqa: E402
from osmo_core.service import Service  # noqa: E402
from osmo_core.wire import BackendEvent, Exited, LaunchRequest  # noqa: E402
from tests.conftest import TEST_IMAGE, _container_setup, make_config  # noqa: E402

N_START = 20
CHAIN = 200
TIMEOUT = 600.0  # any single wait in this script


def by_hand(*options: str) -> float:
    """Median seconds of `podman run --rm [options] IMAGE true`."""
    times = []
    for _ in range(N_START):
        t0 = time.perf_counter()
        subprocess.run(["podman", "run", "--rm", *options, TEST_IMAGE, "true"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def left(root: Path) -> list[str]:
    """The containers of the agent of `root` not removed yet."""
    ps = ["podman", "ps", "-aq", "--filter", f"label=osmo.root={root}"]
    return subprocess.run(ps, capture_output=True, text=True, check=True).stdout.split()


async def through_agent(root: Path) -> tuple[float, float]:
    """Median seconds from launch to the exit of a `true` task in the image, and seconds for
    all N_START in a row until their containers are removed (the agent removes each after its
    end is recorded; `podman run --rm` by hand removes it before it returns)."""
    ended: dict[str, asyncio.Future[None]] = {}

    def sink(ev: BackendEvent) -> None:
        if isinstance(ev, Exited) and ev.key in ended:
            ended[ev.key].set_result(None)

    backend = LocalBackend("local", {"root": str(root), "idle_timeout": 60})
    await backend.start(sink)
    times = []
    try:
        for i in range(N_START + 1):  # the first pays the runtime probe and image check
            key = f"bench/start/{i}"
            ended[key] = asyncio.get_running_loop().create_future()
            t0 = time.perf_counter()
            if i == 1:
                first = t0
            await backend.launch(LaunchRequest(key=key, argv=["true"], image=TEST_IMAGE))
            await asyncio.wait_for(ended[key], TIMEOUT)
            if i:
                times.append(time.perf_counter() - t0)
        deadline = time.monotonic() + TIMEOUT
        while left(backend.root) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        removed = time.perf_counter() - first
    finally:
        await backend.shutdown_agent(force=True)
    return statistics.median(times), removed


def chain_spec(containers: str) -> dict[str, Any]:
    tasks = [
        {
            "name": f"t{i}",
            "image": TEST_IMAGE,
            "command": ["sh", "-c", "echo $OSMO_TASK_NAME >> {{output}}/trail"],
            **({"inputs": [{"task": f"t{i - 1}"}]} if i else {}),
        }
        for i in range(CHAIN)
    ]
    return {"workflow": {"name": f"chain-{containers}", "tasks": tasks}}


async def chain(data: Path, containers: str) -> float:
    svc = Service(make_config(data, containers=containers))
    await svc.start()
    try:
        t0 = time.perf_counter()
        wf = await svc.submit(chain_spec(containers))
        status = await asyncio.wait_for(svc.wait(wf), TIMEOUT)
        took = time.perf_counter() - t0
        assert status == "COMPLETED", svc.get(wf)
    finally:
        for backend in svc.backends.values():
            await backend.shutdown_agent(force=True)  # type: ignore[attr-defined]
        await svc.stop()
    return took


def main(which: list[str]) -> None:
    if why := _container_setup():
        sys.exit(f"containers benchmark: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        if "start" in which:
            hand, host_net = by_hand(), by_hand("--network", "host")
            agent, removed = asyncio.run(through_agent(Path(tmp, "start")))
            print(
                f"start (medians of {N_START}): podman run --rm by hand {hand * 1000:.0f} ms "
                f"(--network host, as the agent runs it: {host_net * 1000:.0f} ms), a task "
                f"through the agent {agent * 1000:.0f} ms: {agent / hand:.2f}x "
                f"({agent / host_net:.2f}x; target <= 1.3x); {N_START} tasks in a row until "
                f"their containers are removed {removed:.1f} s ({removed / N_START * 1000:.0f} "
                f"ms/task: {removed / N_START / host_net:.2f}x --network host by hand)"
            )
        if "chain" in which:
            host = asyncio.run(chain(Path(tmp, "host"), "off"))
            boxed = asyncio.run(chain(Path(tmp, "ctr"), "auto"))
            per = CHAIN / 1000
            print(
                f"chain: {CHAIN} tasks on the host {host:.1f} s ({host / per:.0f} ms/task), "
                f"in containers {boxed:.1f} s ({boxed / per:.0f} ms/task): {boxed / host:.1f}x"
            )


if __name__ == "__main__":
    main(sys.argv[1:] or ["start", "chain"])
