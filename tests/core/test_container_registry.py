"""Images pulled from a real registry with credentials: Debian's distribution registry
(`docker-registry`, installed by .ci/run) on 127.0.0.1 with htpasswd auth, the test image
pushed to it, and tasks whose image is there pulled with a REGISTRY credential. The password
never shows: not in logs, events, any process's argv or a file left in the data folder."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from osmo_core.data.credentials import FILE as CREDENTIALS_FILE
from tests.conftest import ServiceFactory, free_port
from tests.core.test_containers_service import one_task

PASSWORD = "reg-Pa55-not-in-logs"


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    image: str  # the test image, pushed there


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while not any(c.laddr.port == port for c in psutil.net_connections("tcp4") if c.laddr):
        assert proc.poll() is None, "docker-registry exited"
        assert time.monotonic() < deadline, "docker-registry did not listen in 20 s"
        time.sleep(0.05)


@pytest.fixture
def registry(
    tmp_path: Path, container_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Registry]:
    if not shutil.which("docker-registry") or not shutil.which("htpasswd"):
        pytest.skip("docker-registry or htpasswd is not installed (.ci/run installs both)")
    d = tmp_path / "registry"
    d.mkdir()
    port = free_port()
    host = f"127.0.0.1:{port}"
    htpasswd = subprocess.run(  # bcrypt, as the registry requires; the password on stdin
        ["htpasswd", "-Bin", "osmo"], input=PASSWORD.encode(), capture_output=True, check=True
    )
    (d / "htpasswd").write_bytes(htpasswd.stdout)
    (d / "config.yml").write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {d}/data}}}}\n"
        f"http: {{addr: '{host}'}}\n"
        f"auth: {{htpasswd: {{realm: osmo-test, path: {d}/htpasswd}}}}\n"
    )
    # plain HTTP on loopback: podman is told so for this registry only (the agents inherit it)
    (d / "registries.conf").write_text(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(d / "registries.conf"))
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(d / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=(d / "log").open("wb"),
    )
    pushed = []
    try:
        _wait_listening(port, proc)
        token = base64.b64encode(f"osmo:{PASSWORD}".encode()).decode()
        (d / "auth.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
        for tag in ("good", "bad"):  # one per task: a pulled image is not pulled again
            pushed.append(f"{host}/osmo/busybox:{tag}")
            subprocess.run(
                [
                    "podman",
                    "push",
                    "-q",
                    "--authfile",
                    str(d / "auth.json"),
                    container_image,
                    pushed[-1],
                ],
                check=True,
                capture_output=True,
            )
        yield Registry(host, f"{host}/osmo/busybox")
    finally:
        proc.terminate()
        proc.wait(10)
        subprocess.run(["podman", "rmi", "-i", *pushed], capture_output=True)


class ArgvWatch:
    """Every process's argv, sampled every 10 ms while it runs: what `ps` could show."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            for p in psutil.process_iter(["cmdline"]):
                self.seen.add(" ".join(p.info["cmdline"] or []))

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _files_with(root: Path, text: bytes) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and p.name != CREDENTIALS_FILE and text in p.read_bytes()
    ]


async def test_a_private_image_is_pulled_with_its_registry_credential_and_never_shown(
    service_factory: ServiceFactory, registry: Registry, tmp_path: Path
) -> None:
    cred = {"registry": registry.host, "username": "osmo", "auth": PASSWORD}
    svc = await service_factory(tmp_path / "good", credentials={"reg": cred})
    with ArgvWatch() as argv:
        wf = await svc.submit(one_task(f"{registry.image}:good", "echo pulled and ran"))
        assert await asyncio.wait_for(svc.wait(wf), 60) == "COMPLETED", svc.get(wf)
    lines = [ln.text for ln in await svc.logs(wf, "main")]
    assert f"pulling image {registry.image}:good (podman)" in lines
    assert lines[-1] == "pulled and ran"
    assert any(a.startswith("podman") and registry.image in a for a in argv.seen)  # sampled
    assert not [a for a in argv.seen if PASSWORD in a]
    assert not _files_with(tmp_path / "good", PASSWORD.encode())  # logs, events (the db)
    assert not list((tmp_path / "good").rglob("registry-auth"))  # the pull's auth file


async def test_a_wrong_registry_password_is_failed_image_pull_with_the_registry_message(
    service_factory: ServiceFactory, registry: Registry, tmp_path: Path
) -> None:
    wrong = "wr0ng-" + PASSWORD
    cred = {"registry": registry.host, "username": "osmo", "auth": wrong}
    svc = await service_factory(tmp_path / "bad", credentials={"reg": cred})
    wf = await svc.submit(one_task(f"{registry.image}:bad", "true"))
    assert await asyncio.wait_for(svc.wait(wf), 60) == "FAILED_IMAGE_PULL"
    message = svc.task(wf, "main")["message"]
    assert f"cannot pull image {registry.image}:bad" in message
    assert "unauthorized: authentication required" in message
    assert not _files_with(tmp_path / "bad", wrong.encode())
