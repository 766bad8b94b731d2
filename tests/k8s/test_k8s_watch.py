"""Watching, restarts, orphans and several clusters: the backend against kmock's API server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import kmock as km

from osmo_core.backends.kubernetes.backend import KubernetesBackend
from osmo_core.config import OsmoConfig
from osmo_core.service import Service
from osmo_core.wire import Exited, LaunchRequest, Started
from tests.k8s.conftest import NAMESPACE, Kubelet, backend_requests, running_kubelet, until


def _conf(url: str, **extra: Any) -> dict[str, Any]:
    return {"host": url, "namespace": NAMESPACE, **extra}


def _req(key: str, script: str) -> LaunchRequest:
    return LaunchRequest(key=key, argv=["sh", "-c", script], image="busybox")


async def test_api_calls_per_task_are_create_and_the_shared_watch(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    events: list[Any] = []
    backend = KubernetesBackend("k8s", _conf(str(kmock.url), root=str(tmp_path)))
    await backend.start(events.append)
    n = 12
    for i in range(n):
        await backend.launch(_req(f"wf/t{i}/0", f"echo {i}"))
    await until(lambda: sum(isinstance(e, Exited) for e in events) == n, 15)
    await until(lambda: len([r for r in backend_requests(kmock) if r.method == "DELETE"]) >= n)
    await backend.stop()
    calls: dict[str, int] = {}
    for r in backend_requests(kmock):
        path = r.url.path
        what = "watch" if r.params.get("watch") == "true" else r.method.value
        kind = (
            "log"
            if path.endswith("/log")
            else path.rsplit("/", 2)[-2 if r.method.value == "DELETE" else -1]
        )
        calls[f"{what} {kind}"] = calls.get(f"{what} {kind}", 0) + 1
    # no polling: the pod reads do not grow with the number of tasks
    assert calls["POST pods"] == n and calls["watch pods"] == 1 and calls["GET pods"] == 1, calls
    assert calls["GET log"] == n and calls["DELETE pods"] == n, calls  # archive, then clean up
    assert [e.key for e in events if isinstance(e, Started)].count("wf/t0/0") == 1


async def test_410_gone_relists_and_keeps_following(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    gone = {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "code": 410,
            "reason": "Expired",
            "message": "too old",
        },
    }
    kmock["watch pods"][:1] << json.dumps(gone).encode() + b"\n"  # the first watch only
    events: list[Any] = []
    backend = KubernetesBackend("k8s", _conf(str(kmock.url), root=str(tmp_path)))
    await backend.start(events.append)
    try:
        await backend.launch(_req("wf/a/0", "echo a"))
        await until(lambda: any(isinstance(e, Exited) for e in events))
        assert backend._watcher is not None and backend._watcher.lists == 2
    finally:
        await backend.stop()


async def test_restart_resyncs_by_label_and_reaps_orphans(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    conf = _conf(str(kmock.url), root=str(tmp_path), orphan_grace=3600)
    events: list[Any] = []
    first = KubernetesBackend("k8s", conf)
    await first.start(events.append)
    await first.launch(_req("wf1/done/0", "echo a"))
    await first.launch(_req("wf1/hang/0", "hang"))
    await first.launch(_req("wf1/orphan/0", "hang"))
    assert (await first.launch(_req("wf1/done/0", "true"))).already_known
    await first.stop()  # before it could clean anything up
    await until(lambda: len(kubelet.manifests) == 3)
    # a restarted control plane: a new instance, nothing in memory, pods found by label
    second = KubernetesBackend("k8s", conf)
    await second.start(events.append)
    try:
        states = await until(
            lambda: _when(
                second.status(["wf1/done/0", "wf1/hang/0", "wf1/nope/0"]),
                lambda s: s["wf1/done/0"].state == "exited",
            )
        )
        assert states["wf1/done/0"].exit_code == 0
        assert states["wf1/hang/0"].state == "running"
        assert states["wf1/nope/0"].state == "unknown"
        assert await second.reap_orphans() == [
            p["metadata"]["name"] for p in kubelet.manifests if "orphan" in p["metadata"]["name"]
        ]
        log = await until(lambda: second.read_log("wf1/done/0"))
        assert [x.text for x in log] == ["a"]
        await second.cancel("wf1/hang/0")
        await until(lambda: _no_pods(kubelet))
        # after its pod is gone, the end record still answers
        assert (await second.status(["wf1/done/0"]))["wf1/done/0"].state == "exited"
    finally:
        await second.stop()


async def _when(coro: Any, ok: Any) -> Any:
    value = await coro
    return value if ok(value) else None


async def _no_pods(kubelet: Kubelet) -> bool:
    return not (await asyncio.to_thread(kubelet.api.list_namespaced_pod, NAMESPACE)).items


class Partition:
    """A TCP relay on 127.0.0.1 in front of one emulated cluster: `cut()` drops every
    connection and stops listening (the cluster is unreachable), `heal()` listens again on
    the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def heal(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def test_two_clusters_one_dies_only_its_pools_suffer_then_it_resyncs(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    async with km.KubernetesEmulator() as west_api, km.Server(west_api):
        link = Partition(west_api.url.port)
        await link.heal()
        data = tmp_path / "osmo"
        urls = {"east": str(kmock.url), "west": f"http://127.0.0.1:{link.port}"}
        config = OsmoConfig(
            data_dir=str(data),
            store_url=f"sqlite:///{data / 'osmo.db'}",
            backends={
                name: {"kind": "kubernetes", "host": url, "namespace": NAMESPACE}
                for name, url in urls.items()
            },
            pools={
                name: {"backend": name, "platforms": {"default": {}}} for name in ("east", "west")
            },
            default_pool="east",
        )
        async with running_kubelet(west_api):
            svc = Service(config)
            await svc.start()
            west = svc.backends["west"]
            try:
                await until(lambda: west.connected)
                await link.cut()  # the west cluster is unreachable
                await until(lambda: not west.connected)
                wf = await _submit_and_wait(svc, "east")
                assert wf["status"] == "COMPLETED", wf
                await link.heal()  # it comes back: the watcher reconnects and lists again
                await until(lambda: west.connected, 15)
                wf = await _submit_and_wait(svc, "west")
                assert wf["status"] == "COMPLETED", wf
                assert west._watcher is not None and west._watcher.lists >= 2
            finally:
                await svc.stop()
                with contextlib.suppress(Exception):
                    await link.cut()


async def _submit_and_wait(svc: Service, pool: str) -> dict[str, Any]:
    spec = {
        "workflow": {
            "name": pool,
            "pool": pool,
            "tasks": [{"name": "t", "image": "busybox", "command": ["sh", "-c", "echo hi"]}],
        }
    }
    wf_id = await svc.submit(spec)
    await asyncio.wait_for(svc.wait(wf_id), 20)
    return svc.get(wf_id)


async def test_an_unreachable_cluster_at_start_does_not_stop_the_control_plane(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    data = tmp_path / "osmo"
    dead = Partition(1)
    await dead.heal()  # a free port: listen, then close, so nothing answers there
    await dead.cut()
    config = OsmoConfig(
        data_dir=str(data),
        store_url=f"sqlite:///{data / 'osmo.db'}",
        backends={
            "east": {"kind": "kubernetes", "host": str(kmock.url), "namespace": NAMESPACE},
            "gone": {"kind": "kubernetes", "host": f"http://127.0.0.1:{dead.port}"},
        },
        pools={n: {"backend": n, "platforms": {"default": {}}} for n in ("east", "gone")},
        default_pool="east",
    )
    svc = Service(config)
    await svc.start()
    try:
        assert not svc.backends["gone"].connected
        wf = await _submit_and_wait(svc, "east")
        assert wf["status"] == "COMPLETED", wf
    finally:
        await svc.stop()


async def test_a_relist_does_not_lose_a_pod_created_while_it_was_answered(tmp_path: Path) -> None:
    import time

    from osmo_core.wire import Lost

    events: list[Any] = []
    backend = KubernetesBackend("k8s", _conf("http://127.0.0.1:9", root=str(tmp_path)))
    backend._sink = events.append
    asked = time.monotonic()
    backend._track("wf/new/0")  # launched after the list was asked for: may be missing
    backend._on_pod("SYNC", (asked, []))
    assert events == []
    backend._on_pod("SYNC", (time.monotonic(), []))  # a later list without it: it is gone
    await until(lambda: events)
    assert isinstance(events[0], Lost) and events[0].message == "pod deleted"
    await backend.stop()
