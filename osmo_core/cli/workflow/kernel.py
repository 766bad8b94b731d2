"""`osmo workflow kernel WF TASK`: a kernel inside a running task, for `jupyter console`.

Starts the kernel through the server (`POST .../tasks/{task}/kernels`), listens on 127.0.0.1
for each of its five channels (each connection goes to the server as a WebSocket of bytes,
`.../kernels/{id}/channels/{channel}`), writes a jupyter connection file (0600) naming those
ports and the kernel's key, prints it, and runs until interrupted; then shuts the kernel down
and removes the file. In another shell: `jupyter console --existing FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import OsmoError
from ..common import EXIT_OK, Output
from ..connect import with_client

if TYPE_CHECKING:
    from ...client import Client


def register(cmds: Any) -> None:
    """Add `kernel` to the `workflow` group's subcommands."""
    k = cmds.add_parser(
        "kernel", help="start a Jupyter kernel inside a running task; prints a connection file"
    )
    k.add_argument("id")
    k.add_argument("task")
    k.add_argument("--file", help="where to write the connection file (default: ./kernel-ID.json)")
    k.set_defaults(run=with_client(kernel_command))


async def kernel_command(client: Client, args: argparse.Namespace, out: Output) -> int:
    from ...interactive.tunnel import PortTunnel, WebSocketStream

    base = f"workflows/{args.id}/tasks/{args.task}/kernels"
    made = await asyncio.to_thread(client.request, "POST", base, body={})
    path = f"{base}/{made['kernel_id']}"

    def opener(channel: str) -> Any:
        async def open_ws() -> tuple[WebSocketStream, WebSocketStream]:
            s = WebSocketStream(await client.websocket(f"{path}/channels/{channel}"))
            return s, s

        return open_ws

    tunnels = {ch: PortTunnel(opener(ch), name=f"kernel {ch}") for ch in made["channels"]}
    info: dict[str, Any] = {f"{ch}_port": await t.start() for ch, t in tunnels.items()}
    info.update(
        ip="127.0.0.1",
        transport="tcp",
        key=made["key"],
        signature_scheme=made["signature_scheme"],
        kernel_name=made["kernel_name"],
    )
    file = Path(args.file or f"kernel-{made['kernel_id']}.json").resolve()
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=1)
    print(f"kernel {made['kernel_id']} running in {args.id}/{args.task}", flush=True)
    print(f"connect with: jupyter console --existing {file}", flush=True)
    print(file, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        file.unlink(missing_ok=True)
        try:
            await asyncio.to_thread(client.request, "DELETE", path)
        except OsmoError as e:  # already gone with its task
            out.info(f"kernel {made['kernel_id']}: {e}")
        await asyncio.gather(*(t.close() for t in tunnels.values()), return_exceptions=True)
    return EXIT_OK
