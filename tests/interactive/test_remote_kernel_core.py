"""A kernel inside a running task, straight through the Service (the embedded engine's path:
osmo_core/interactive/kernel.py), with a real ipykernel and jupyter_client."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest
from jupyter_client.asynchronous import AsyncKernelClient

from osmo_core.errors import Conflict
from osmo_core.interactive.kernel import RemoteKernel
from tests.interactive.conftest import long_spec, running, until


async def stream_of(kc: AsyncKernelClient, msg_id: str, until_text: str, timeout: float) -> str:
    out = ""
    deadline = time.monotonic() + timeout
    while until_text not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"waited {timeout}s for {until_text!r}; got {out!r}"
        msg = await kc.get_iopub_msg(timeout=left)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            out += msg["content"]["text"]
    return out


async def test_kernel_runs_in_the_task_and_ends_with_it_saying_why(service):
    wf = await service.submit(long_spec())
    await running(service, wf)
    k = await RemoteKernel.start(service, wf, "main", uuid.uuid4().hex.encode())
    kc = AsyncKernelClient()
    kc.load_connection_info(k.connection_info())
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=20)
        code = "import os; print(open('marker').read().strip(), os.environ['TASK_SECRET'])"
        assert "ready inside-the-task" in await stream_of(kc, kc.execute(code), "task", 20)

        busy = kc.execute("import time; print('busy', flush=True); time.sleep(60)")
        await stream_of(kc, busy, "busy", 20)
        await service.cancel(wf)
        said = await stream_of(kc, busy, "shut down", 20)
        assert f"[osmo] task {wf}/main ended (FAILED_CANCELED" in said
        assert await asyncio.wait_for(k.wait(), 10) is not None
        assert k.reason is not None and "ended (FAILED_CANCELED" in k.reason

        def gone() -> bool:
            try:
                os.kill(int(k.remote["pid"]), 0)
            except ProcessLookupError:
                return True
            return False

        await until(gone, timeout=10, what="the kernel process to exit")
    finally:
        kc.stop_channels()
        await k.close()
    with pytest.raises(Conflict, match="needs a RUNNING task"):
        await RemoteKernel.start(service, wf, "main", b"k")
