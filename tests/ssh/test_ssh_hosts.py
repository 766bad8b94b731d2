"""The SSH backend against real hosts: connection checks, provisioning, data between machines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sshhosts import Hosts, until

from osmo_core.backends.local import LocalBackend
from osmo_core.backends.ssh.backend import SSHBackend
from osmo_core.errors import BackendError
from osmo_core.wire import BackendEvent, Exited, InputSpec, LaunchRequest, LogLine, NodeOnline


class Sink:
    def __init__(self) -> None:
        self.items: list[BackendEvent | NodeOnline] = []

    def __call__(self, ev: BackendEvent | NodeOnline) -> None:
        self.items.append(ev)

    def end(self, key: str) -> Exited | None:
        return next((e for e in self.items if isinstance(e, Exited) and e.key == key), None)

    def lines(self, key: str) -> list[str]:
        return [e.text for e in self.items if isinstance(e, LogLine) and e.key == key]


async def test_a_wrong_host_key_is_refused_and_an_unreachable_host_reported(
    hosts: Hosts, tmp_path: Path
) -> None:
    h1 = hosts.hosts[0]
    # known_hosts that pins h2's key for h1: a host presenting another key is refused
    wrong = tmp_path / "known_hosts"
    theirs = hosts.known_hosts.read_text().splitlines()[1].split(" ", 1)[1]
    wrong.write_text(f"{h1.alias},{h1.addr} {theirs}\n")
    config = tmp_path / "ssh_config"
    config.write_text(hosts.ssh_config.read_text() + f"Host gone\n  HostName {hosts.net}.99\n")
    backend = SSHBackend(
        "lab",
        hosts.backend(
            root=str(tmp_path / "cp"),
            hosts=["h1", "gone"],
            known_hosts=str(wrong),
            ssh_config=[str(config)],
            connect_timeout=1,
        ),
    )
    await backend.start(Sink())
    try:
        status = backend.host_status()
        assert not status["h1"]["online"] and not status["gone"]["online"]
        assert "host h1: refused, its host key is not trusted" in status["h1"]["error"]
        assert str(wrong) in status["h1"]["error"]
        assert status["gone"]["error"].startswith("host gone is unreachable")
        nodes = {n.name: n for n in await backend.nodes()}
        assert not nodes["h1"].online and not nodes["gone"].online
        req = LaunchRequest(key="wf-1/t/0", argv=["true"], node="h1")
        with pytest.raises(BackendError, match="host h1 is offline: host h1: refused, its host"):
            await backend.launch(req)
    finally:
        await backend.stop()


async def test_data_moves_between_the_local_machine_and_two_hosts(
    hosts: Hosts, tmp_path: Path
) -> None:
    """local task -> task on h1 -> task on h2 -> local task, each reading its input's file."""
    local_sink, ssh_sink = Sink(), Sink()
    local = LocalBackend("local", {"root": str(tmp_path / "cp"), "idle_timeout": 30})
    lab = SSHBackend("lab", hosts.backend(root=str(tmp_path / "cp")))
    await local.start(local_sink)
    await lab.start(ssh_sink)
    try:
        await until(lambda: all(lab.hosts[a].node.online for a in ("h1", "h2")), what="hosts")
        told = [(e.backend, e.node, e.online) for e in ssh_sink.items if isinstance(e, NodeOnline)]
        assert {("lab", "h1", True), ("lab", "h2", True)} <= set(told), told  # the engine knows
        first = await local.launch(
            LaunchRequest("wf-1/a/0", ["sh", "-c", "echo from-local > $OSMO_OUTPUT/a.txt"])
        )
        await until(lambda: local_sink.end("wf-1/a/0"), what="a")
        info1 = await lab.launch(
            LaunchRequest(
                "wf-1/b/0",
                [
                    "sh",
                    "-c",
                    "cat {{input:0}}/a.txt > {{output}}/b.txt; whoami >> {{output}}/b.txt; "
                    "echo done; echo warn >&2",
                ],
                inputs=[InputSpec(0, path=first.output)],
                node="h1",
            )
        )
        await until(lambda: ssh_sink.end("wf-1/b/0"), what="b")
        info2 = await lab.launch(
            LaunchRequest(
                "wf-1/c/0",
                [
                    "sh",
                    "-c",
                    "cat {{input:0}}/b.txt > {{output}}/c.txt; whoami >> {{output}}/c.txt",
                ],
                inputs=[InputSpec(0, path=info1.output)],
                node="h2",
            )
        )
        await until(lambda: ssh_sink.end("wf-1/c/0"), what="c")
        await local.launch(
            LaunchRequest(
                "wf-1/d/0", ["cat", "{{input:0}}/c.txt"], inputs=[InputSpec(0, path=info2.output)]
            )
        )
        done = await until(lambda: local_sink.end("wf-1/d/0"), what="d")
        assert done.exit_code == 0
        users = [h.user for h in hosts.hosts[:2]]
        assert local_sink.lines("wf-1/d/0") == ["from-local", users[0], users[1]]
        # the log of a remote attempt, per stream, live and read back through the backend
        lines = await lab.read_log("wf-1/b/0")
        assert [(ln.stream, ln.text) for ln in lines if ln.stream != "system"] == [
            ("stdout", "done"),
            ("stderr", "warn"),
        ] or [(ln.stream, ln.text) for ln in lines if ln.stream != "system"] == [
            ("stderr", "warn"),
            ("stdout", "done"),
        ]
        assert [ln.text for ln in lines] == ssh_sink.lines("wf-1/b/0")
        assert ssh_sink.end("wf-1/b/0").exit_code == 0  # type: ignore[union-attr]
    finally:
        await lab.shutdown_agents()
        await local.shutdown_agent()
        await asyncio.sleep(0)
